"""``batos codex``: the personas' codices — amendment proposals, history, revert.

Proposals are decided in the console; here they are only listed.
"""

from __future__ import annotations

import argparse
import time

from batos.cli.common import Commands, add_command, add_group, print_json
from batos.core.image import open_image


def register(commands: Commands) -> None:
    actions = add_group(commands, "codex", "the personas' codices: amendment proposals, history, revert")
    p = add_command(actions, "proposals", cmd_codex_proposals, "amendment proposals (pending; --all for every one); decide them in the console", image=True)
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "history", cmd_codex_history, "a persona's earlier codices, oldest first, then the current one", image=True)
    p.add_argument("persona")
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "revert", cmd_codex_revert, "restore the codex a persona had before its latest amendment", image=True)
    p.add_argument("persona")


def cmd_codex_proposals(args: argparse.Namespace) -> int:
    from batos.loops.amendments import list_proposals

    with open_image(args.image, read_only=args.image_is_file) as image:
        found = list_proposals(image.db, None if args.all else "pending")
    if args.json:
        print_json(found, default=str)
        return 0
    if not found:
        print("no pending proposals" if not args.all else "no proposals")
    for p in found:
        print(f"{p['id']} [{p['status']}] {p.get('persona', '-')}.{p.get('field', '-')} (mean dissonance {p['mean']:.2f})")
        if p.get("new_text"):
            print(f"  old: {p['old_text']}\n  new: {p['new_text']}\n  why: {p['rationale']}")
    return 0


def cmd_codex_history(args: argparse.Namespace) -> int:
    from batos.loops.amendments import codex_history

    with open_image(args.image, read_only=args.image_is_file) as image:
        history = codex_history(image.db, args.persona)
    if args.json:
        print_json(history, default=str)
        return 0
    for number, entry in enumerate(history):
        codex = entry["codex"]
        label = "current" if entry.get("current") else f"#{number} replaced {time.strftime('%Y-%m-%d %H:%M', time.localtime(entry['at']))} by proposal {entry['proposal']} ({entry['change']})"
        print(f"{label}\n  mission: {codex['mission']}\n  method:  {codex['method']}")
    return 0


def cmd_codex_revert(args: argparse.Namespace) -> int:
    from batos.loops.amendments import revert_codex

    with open_image(args.image) as image:
        restored = revert_codex(image.db, args.persona)
    print(f"{args.persona.upper()}'s codex restored to the one before proposal {restored['proposal']} ({restored['change']})")
    return 0
