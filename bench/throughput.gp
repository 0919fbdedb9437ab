# bench/throughput.gp - bars of echoed MB/s per scenario per target (log scale).
# run.sh passes datafile, outfile, ymin and subtitle with -e.
if (!exists("subtitle")) subtitle = ""
if (!exists("ymin")) ymin = 0.1

set terminal pngcairo size 1400,700 font "DejaVu Sans,12"
set output outfile
set title "Echo throughput: direct TCP, websockify, wsgate (1 and 2 workers), Go and Node relays\n{/*0.8 ".subtitle."}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border rgb "#333333"
set boxwidth 0.9
set logscale y
# The axis starts at ymin, the power of ten below the smallest bar (from report.py).
set yrange [ymin : *]
set format y "%g"
set ylabel "MB/s echoed (payload, log scale)"
set xlabel "message size × connections"
set grid ytics mytics lc rgb "#dddddd"
set key top left box opaque
set xtics nomirror scale 0
set ytics nomirror

mb(v) = v >= 100 ? sprintf("%.0f", v) : sprintf("%.3g", v)
# Bar k of 6 sits at x = row + (k - 3.5) / 7 with "gap 1" (each bar 1/7 wide).
x(k) = $0 + (k - 3.5) / 7.0
plot datafile using 2:xtic(1) title "direct TCP" lc rgb "#7f7f7f", \
     ''       using 3 title "websockify" lc rgb "#e69f00", \
     ''       using 4 title "wsgate"     lc rgb "#0072b2", \
     ''       using 5 title "wsgate, 2 workers" lc rgb "#56b4e9", \
     ''       using 6 title "Go (gorilla/websocket)" lc rgb "#009e73", \
     ''       using 7 title "Node (ws)" lc rgb "#cc79a7", \
     ''       using (x(1)):2:(mb($2)) with labels offset 0,0.7 font ",7" notitle, \
     ''       using (x(2)):3:(mb($3)) with labels offset 0,0.7 font ",7" notitle, \
     ''       using (x(3)):4:(mb($4)) with labels offset 0,0.7 font ",7" notitle, \
     ''       using (x(4)):5:(mb($5)) with labels offset 0,0.7 font ",7" notitle, \
     ''       using (x(5)):6:(mb($6)) with labels offset 0,0.7 font ",7" notitle, \
     ''       using (x(6)):7:(mb($7)) with labels offset 0,0.7 font ",7" notitle
