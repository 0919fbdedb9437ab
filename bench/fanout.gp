# bench/fanout.gp - MQTT fan-out: deliveries/s and p99 latency against subscriber count,
# mosquitto's WebSocket listener vs wsgate's mqtt route (log-log).
# fanout.sh passes datafile, outfile and subtitle with -e. Columns of datafile (from
# report.py --fanout): subscribers, deliveries/s (mosquitto, wsgate), p99 ms (same order).
if (!exists("subtitle")) subtitle = ""

set terminal pngcairo size 1200,560 font "DejaVu Sans,12"
set output outfile
set multiplot layout 1,2 title "MQTT fan-out of 64 B messages to N WebSocket subscribers of one topic\n{/*0.8 ".subtitle."}"
set logscale xy
set format y "%g"
set xlabel "subscribers"
set grid xtics ytics mytics lc rgb "#dddddd"
set key bottom right box opaque
set xrange [0.5:20000]
set xtics ("1" 1, "10" 10, "100" 100, "1,000" 1000, "10,000" 10000) nomirror
set ytics nomirror
# Each label goes above its point when that point is the higher of the two, else below.
up(a, b) = a >= b || b != b ? 1.3 : 1.0 / 1.3
fmt(v) = v >= 1e6 ? sprintf("%.2gM", v / 1e6) : v >= 1000 ? sprintf("%.0fk", v / 1000) : sprintf("%.0f", v)
lat(v) = v >= 10 ? sprintf("%.0f", v) : sprintf("%.2g", v)

set title "delivered messages/s, all subscribers together"
set format y "%.0s%c"
set ylabel "deliveries/s (log scale)"
plot datafile using 1:2 with linespoints lw 2 pt 7 lc rgb "#e69f00" title "mosquitto WebSocket listener", \
     ''       using 1:3 with linespoints lw 2 pt 5 lc rgb "#0072b2" title "wsgate mqtt route", \
     ''       using 1:($2 * up($2, $3)):(fmt($2)) with labels font ",9" tc rgb "#b07000" notitle, \
     ''       using 1:($3 * up($3, $2)):(fmt($3)) with labels font ",9" tc rgb "#0072b2" notitle

set format y "%g"
set title "p99 delivery latency (at that throughput)"
set ylabel "ms (log scale)"
set key top left box opaque
plot datafile using 1:4 with linespoints lw 2 pt 7 lc rgb "#e69f00" title "mosquitto WebSocket listener", \
     ''       using 1:5 with linespoints lw 2 pt 5 lc rgb "#0072b2" title "wsgate mqtt route", \
     ''       using 1:($4 * up($4, $5)):(lat($4)) with labels font ",9" tc rgb "#b07000" notitle, \
     ''       using 1:($5 * up($5, $4)):(lat($5)) with labels font ",9" tc rgb "#0072b2" notitle
unset multiplot
