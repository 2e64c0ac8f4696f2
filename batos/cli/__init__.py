"""The ``batos`` command line.

Every command is a thin shell over a library call. Expected failures
(:class:`BatosError`) print one line on stderr and exit non-zero; a traceback
means a bug.

Each command group is a module that declares its own subcommands
(``register``); the options they share live in :mod:`batos.cli.common`.
Command functions import what they need when they run, so ``batos --help``
and ``batos ping`` never load the models, the loops or the cycle.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from batos import __version__
from batos.cli import codex, cognition, image, kernel, memory, messages, methods, models, watchdog
from batos.cli.common import Command
from batos.core.errors import BatosError
from batos.core.image import default_uri

# In the order `batos --help` lists the commands.
GROUPS = (image, models, kernel, cognition, codex, methods, memory, watchdog, messages)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batos", description="BAT OS: a living object kernel.")
    parser.add_argument("--version", action="version", version=f"batos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "image"):
        # Inspection opens file storages read-only: no lock, so it works
        # beside a running kernel; ZEO connections are read-write.
        uri = args.image or default_uri()
        args.image_is_file = "://" not in uri or uri.startswith("file://")
    func: Command = args.func
    try:
        return func(args)
    except BatosError as exc:
        print(f"batos: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batos: interrupted", file=sys.stderr)
        return 130
