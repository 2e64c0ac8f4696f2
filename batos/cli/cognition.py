"""The cognitive cycle seen from outside: ``batos audit``, ``batos log`` and ``batos cycles``.

``audit`` runs the guardian, which vets every method a cycle synthesises,
on a file of code or raw model output; ``log`` reads back the metacognition
log that the cycles and the slower loops write.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from batos.cli.common import Commands, add_command, add_group, print_json
from batos.core.errors import BatosError


def register(commands: Commands) -> None:
    p = add_command(commands, "audit", cmd_audit, "run the guardian on a file of (model) output; exit 0 if accepted")
    p.add_argument("file", help="Python source or raw model output (markdown fences and prose are fine)")
    p.add_argument("--selector", help="the method to extract (default: the one method in the file)")
    p.add_argument("--show", action="store_true", help="print the extracted source when accepted")

    p = add_command(commands, "log", cmd_log,
                    "show the metacognition log: cycles, self-generated goals, judgements, trainings, proposals", image=True)
    p.add_argument("--file", help="the log file (default: metacognition.jsonl beside the image)")
    p.add_argument("--cycle", help="only this cycle (an id or its prefix)")
    p.add_argument("--event", action="append", help="only these events (repeatable), e.g. --event goal")
    p.add_argument("--follow", action="store_true", help="keep printing new events")

    actions = add_group(commands, "cycles", "the cognitive cycles: what each tried and why it ended as it did")
    p = add_command(actions, "list", cmd_cycles_list, "the newest cycles, one line each", image=True)
    p.add_argument("--state", help="only cycles in this state (COMPLETE, FAILED, SYNTHESIZING, ...)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "show", cmd_cycles_show, "one cycle: brief, checks, every candidate with its repairs, audit and trial, timings", image=True)
    p.add_argument("id", help="the cycle's id or a unique prefix of it")
    p.add_argument("--json", action="store_true")


def cmd_audit(args: argparse.Namespace) -> int:
    from batos.cognition.guardian import audit

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatosError(f"no such file: {path}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise BatosError(f"{path} is not a UTF-8 text file ({type(exc).__name__})") from None
    report = audit(text, args.selector)
    name = report.selector or args.selector or "?"
    print(f"{'ACCEPTED' if report.accepted else 'REJECTED'} {name}")
    for error in report.errors:
        print(f"  {error}")
    if report.accepted and args.show:
        print(report.source, end="")
    return 0 if report.accepted else 1


def cmd_log(args: argparse.Namespace) -> int:
    from batos.core.metalog import format_event, read_events
    from batos.kernel.compose import metalog_path

    path = Path(args.file) if args.file else metalog_path(args.image)
    if not path.exists():
        raise BatosError(f"no metacognition log at {path} (it appears with the first cycle)")
    try:
        for event in read_events(path, args.cycle, args.follow):
            if not args.event or event.get("event") in args.event:
                print(format_event(event), flush=True)
    except KeyboardInterrupt:
        pass  # --follow ends with Ctrl-C: a normal way out, not an interruption
    return 0


def cmd_cycles_list(args: argparse.Namespace) -> int:
    from batos.cognition.report import format_cycle_list, list_cycles
    from batos.core.image import open_image
    from batos.core.txn import reading

    with open_image(args.image, read_only=True) as image, reading(image.db) as root:
        rows = list_cycles(root, args.limit, args.state)
    if args.json:
        print_json(rows)
    else:
        print(format_cycle_list(rows))
    return 0


def cmd_cycles_show(args: argparse.Namespace) -> int:
    from batos.cognition.report import cycle_report, format_cycle
    from batos.core.image import open_image
    from batos.core.txn import reading

    with open_image(args.image, read_only=True) as image, reading(image.db) as root:
        report = cycle_report(root, args.id)
    if args.json:
        print_json(report)
    else:
        print(format_cycle(report))
    return 0
