#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a while, one after the other.
#
#   fuzz/run.sh [-t SECONDS] [-b BUILD_DIR] [-m] [target ...]
#
#   -t  seconds per target (default 60)
#   -b  the fuzz build directory (default build-fuzz); built first
#   -m  afterwards, merge what was found into fuzz/corpus/<target>
#       (minimised: only inputs that add coverage) - review before committing
#
# Builds with: CC=clang cmake -S fuzz -B BUILD_DIR (if BUILD_DIR has no
# cache yet). New inputs go to BUILD_DIR/run/corpus/<target>, crashes to
# BUILD_DIR/run/artifacts/; the repository's seeds are only read, unless -m.
# Exit status 1 if any target crashed. Uses one core: -jobs is never set.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
build=build-fuzz
merge=0
while getopts "t:b:m" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    b) build=$OPTARG ;;
    m) merge=1 ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=${CC:-clang} cmake -S fuzz -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j2 --target fuzz >/dev/null 2>&1 || cmake --build "$build" -j2 --target fuzz

# The executables: in BUILD_DIR itself (fuzz/ built on its own) or in
# BUILD_DIR/fuzz (built from the root with -DWSGATE_FUZZ=ON).
bindir=$build
[ -x "$build/fuzz/fuzz_topic" ] && bindir=$build/fuzz

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
while read -r name max_len; do
  case $name in ''|'#'*) continue ;; esac
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  out=$build/run/corpus/$name
  mkdir -p "$out" "$build/run/artifacts"
  dirs=(fuzz/corpus/"$name")
  [ -d fuzz/regressions/"$name" ] && dirs+=(fuzz/regressions/"$name")
  opts=(-max_len="$max_len" -timeout=10 -rss_limit_mb=2048)
  [ -f fuzz/dict/"$name".dict ] && opts+=(-dict=fuzz/dict/"$name".dict)
  echo "== fuzz_$name: ${seconds}s"
  if "$bindir/fuzz_$name" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$build/run/artifacts/$name-" "${opts[@]}" "$out" "${dirs[@]}" \
      >"$build/run/$name.log" 2>&1; then
    grep -E "^stat::(number_of_executed_units|new_units_added)|cov: " "$build/run/$name.log" | tail -3
  else
    echo "!! fuzz_$name crashed: see $build/run/$name.log and $build/run/artifacts/"
    grep -E "FUZZ_CHECK|ERROR: |SUMMARY" "$build/run/$name.log" | head -5 || true
    failed+=("$name")
  fi
  if [ "$merge" = 1 ]; then
    "$bindir/fuzz_$name" -merge=1 "${opts[@]}" fuzz/corpus/"$name" "$out" >/dev/null 2>&1
  fi
done < fuzz/targets.txt

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}"
  exit 1
fi
echo "all targets ran ${seconds}s without a crash"
