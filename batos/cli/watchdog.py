"""``batos watchdog``: supervise a kernel process (restarts, upgrades), or show its event log.

The supervisor itself is the ``batos_watchdog`` package (the top-level
``watchdog/`` folder); this module only parses the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from batos.cli.common import Commands, add_command, endpoint_arg
from batos.core.errors import BatosError
from batos.core.image import default_uri


def register(commands: Commands) -> None:
    p = add_command(commands, "watchdog", cmd_watchdog, "supervise a kernel (restarts, upgrades); `status` shows its event log", image=True)
    p.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    endpoint_arg(p)
    p.add_argument("--instructions", help="the upgrade file to watch for (default: update_instructions.json beside the image)")


def cmd_watchdog(args: argparse.Namespace) -> int:
    from batos_watchdog.supervisor import Watchdog, WatchdogError, status

    if args.action == "status":
        print(status(args.image or default_uri()))
        return 0
    watchdog = Watchdog(args.image or default_uri(), args.endpoint, instructions=Path(args.instructions) if args.instructions else None)
    try:
        return watchdog.run()
    except WatchdogError as exc:
        raise BatosError(str(exc)) from None
