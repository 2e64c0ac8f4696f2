#!/usr/bin/env bash
# BAT OS launcher (Linux/macOS).
#   ./puter.sh           set up on first run, start the kernel on the default image in the
#                        background, open the console; stop the kernel when the console exits
#   ./puter.sh setup     set up only (.venv, dependencies, the embedded model)
#   ./puter.sh test      set up what the tests need, then run the whole test suite
#                        (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")"

command=${1:-start}
[ $# -gt 0 ] && shift
case "$command" in
    setup)
        exec scripts/setup.sh
        ;;
    test)
        scripts/setup.sh --tests
        exec .venv/bin/python -m pytest "$@"
        ;;
    start)
        scripts/setup.sh
        mkdir -p logs
        endpoint=${BATOS_ENDPOINT:-tcp://127.0.0.1:5555}
        .venv/bin/batos kernel --endpoint "$endpoint" "$@" >>logs/kernel.log 2>&1 &
        kernel=$!
        trap 'kill -TERM "$kernel" 2>/dev/null; wait "$kernel" 2>/dev/null' EXIT
        echo "kernel pid $kernel on $endpoint; log: $(pwd)/logs/kernel.log"
        .venv/bin/batos ping --endpoint "$endpoint" --timeout 60 >/dev/null
        .venv/bin/batos console --endpoint "$endpoint"
        ;;
    *)
        echo "usage: ./puter.sh [start|setup|test [PYTEST_ARGS...]]" >&2
        exit 2
        ;;
esac
