"""run_valgrind.py - runs one integration test script with wsgate under
valgrind memcheck (the CTest label "valgrind", see tests/CMakeLists.txt).

    run_valgrind.py WSGATE_BINARY tests/integration/test_x.py [unittest args]

WSGATE_BIN is pointed at wsgate-valgrind.sh, which execs valgrind on the real
binary: a memory error or a definite/indirect leak makes wsgate exit 99 at
SIGTERM, and the harness fails the test (it expects exit 0) and prints the
log with valgrind's report. The harness's time limits are stretched for
valgrind's ~20-50x slowdown: 60 s to answer /healthz at start, 60 s to exit
after SIGTERM (the leak check runs then).

Exits 77 (CTest SKIP_RETURN_CODE) when valgrind is missing or the binary is
an AddressSanitizer build (the two cannot be combined): build without
-DWSGATE_SANITIZE for this label."""

import functools
import os
import runpy
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    real, script = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if not shutil.which("valgrind"):
        print("SKIP: valgrind not found (apt-get install valgrind)", flush=True)
        return 77
    with open(real, "rb") as f:
        if b"__asan_init" in f.read():
            print("SKIP: %s is an AddressSanitizer build; valgrind needs a plain build "
                  "(cmake without -DWSGATE_SANITIZE=ON)" % real, flush=True)
            return 77
    os.environ["WSGATE_REAL_BIN"] = real
    os.environ["WSGATE_BIN"] = os.path.join(HERE, "wsgate-valgrind.sh")
    sys.path.insert(0, INTEGRATION)
    import harness
    harness.STOP_GRACE_S = 60.0
    harness.READY_TIMEOUT_S = 60.0
    harness.stop_process = functools.partial(harness.stop_process, grace=60.0)
    harness.wait_healthy = functools.partial(harness.wait_healthy, timeout=60.0)
    sys.argv = [script] + sys.argv[3:]
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
