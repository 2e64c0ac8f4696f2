#!/usr/bin/env bash
# BAT OS launcher (Linux/macOS).
#   ./puter.sh           set up on first run, then start BAT OS on the default image
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
        .venv/bin/batos image init
        exec .venv/bin/batos image info
        ;;
    *)
        echo "usage: ./puter.sh [start|setup|test [PYTEST_ARGS...]]" >&2
        exit 2
        ;;
esac
