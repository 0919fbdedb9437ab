#!/bin/sh
# wsgate-valgrind.sh - stands in for the wsgate binary (WSGATE_BIN) in the
# integration tests run by run_valgrind.py: runs the real binary
# ($WSGATE_REAL_BIN) under valgrind memcheck. Any memory error, and any
# definitely or indirectly lost block at exit, makes the process exit 99,
# which the harness reports (every gateway must exit 0 on SIGTERM). Still
# reachable and possibly lost blocks (threads and globals of libraries at
# exit) are not errors. The report goes to stderr, i.e. into the gateway's
# log that the harness prints when a test fails.
here=$(dirname "$0")
: "${WSGATE_REAL_BIN:?WSGATE_REAL_BIN must name the real wsgate binary}"
exec valgrind --quiet --error-exitcode=99 \
    --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --track-fds=no --num-callers=40 \
    --suppressions="$here/wsgate.supp" ${WSGATE_VALGRIND_EXTRA:-} \
    "$WSGATE_REAL_BIN" "$@"
