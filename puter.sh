#!/usr/bin/env bash
# BAT OS launcher (Linux/macOS).
#   ./puter.sh [--keep-running] [start]
#                        set up on first run, start the watchdog (which starts the kernel) in
#                        the background, wait until the kernel answers, open the console; when
#                        the console exits, offer to stop the system ($BATOS_IMAGE, $BATOS_ENDPOINT)
#   ./puter.sh setup     set up only (.venv, dependencies, the embedded model)
#   ./puter.sh test      set up what the tests need, check the layer contracts (lint-imports),
#                        then run the whole test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")"

command=${1:-start}
case "$command" in
    --keep-running) command=start ;;
    *) [ $# -gt 0 ] && shift ;;
esac
case "$command" in
    setup)
        exec scripts/setup.sh
        ;;
    test)
        scripts/setup.sh --tests
        # the layer contracts in pyproject.toml: an upward import fails the run before any test
        .venv/bin/lint-imports --no-cache
        exec .venv/bin/python -m pytest "$@"
        ;;
    start)
        keep=0
        if [ "${1:-}" = "--keep-running" ]; then keep=1; shift; fi
        scripts/setup.sh
        image=${BATOS_IMAGE:-./live_image.fs}
        endpoint=${BATOS_ENDPOINT:-tcp://127.0.0.1:5555}
        logdir=$(cd "$(dirname "$image")" && pwd)
        if .venv/bin/batos ping --endpoint "$endpoint" --timeout 1 >/dev/null 2>&1; then
            echo "BAT OS is already running on $endpoint"
        else
            if [ -e "$image" ]; then
                # an image written by an earlier release is upgraded in place first (no-op when current)
                .venv/bin/batos image migrate --image "$image"
            fi
            .venv/bin/batos watchdog --image "$image" --endpoint "$endpoint" >>"$logdir/watchdog.out" 2>&1 &
            echo "watchdog pid $! on $endpoint"
            echo "logs: $logdir/watchdog.jsonl (events), $logdir/kernel.log (kernel), $logdir/watchdog.out"
            if ! .venv/bin/batos ping --endpoint "$endpoint" --timeout 120 >/dev/null; then
                echo "the kernel did not answer; see the logs above" >&2
                exit 1
            fi
        fi
        .venv/bin/batos console --endpoint "$endpoint" || true
        if [ "$keep" = 1 ]; then
            echo "BAT OS keeps running on $endpoint (stop it with: kill \$(cat $logdir/$(basename "$image").watchdog.lock))"
            exit 0
        fi
        answer=y
        if [ -t 0 ]; then
            read -r -p "Stop BAT OS? [Y/n] " answer || answer=y
        fi
        case "${answer:-y}" in
            [nN]*) echo "BAT OS keeps running on $endpoint" ;;
            *)
                pid=$(cat "$logdir/$(basename "$image").watchdog.lock" 2>/dev/null | tr -dc '0-9')
                if [ -n "$pid" ]; then
                    kill -TERM "$pid" 2>/dev/null || true
                    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
                fi
                echo "BAT OS stopped"
                ;;
        esac
        ;;
    *)
        echo "usage: ./puter.sh [start|setup|test [PYTEST_ARGS...]]" >&2
        exit 2
        ;;
esac
