"""What every command group shares: option declarations, output helpers, the client.

Options that several commands take (``--image``, ``--endpoint``, the client's
timeout and CURVE keys) are declared here once, so their help text and
defaults cannot drift apart between commands.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from batos.core.image import default_uri
from batos.wire.protocol import DEFAULT_ENDPOINT, ENDPOINT_ENV, default_endpoint

# argparse exposes no public name for what add_subparsers() returns.
Commands = argparse._SubParsersAction
Command = Callable[[argparse.Namespace], int]


def add_command(commands: Commands, name: str, func: Command, help: str, *, image: bool = False) -> argparse.ArgumentParser:
    """One subcommand that runs *func*; ``image=True`` gives it the ``--image`` option."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help)
    if image:
        image_arg(parser)
    parser.set_defaults(func=func)
    return parser


def add_group(commands: Commands, name: str, help: str) -> Commands:
    """A command whose first word picks one of its actions (``batos image init``)."""
    parser = commands.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def image_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=None, help=f"image URI (default: $BATOS_IMAGE or {default_uri()})")


def endpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=default_endpoint(), help=f"ZeroMQ endpoint (default: ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})")


def client_args(parser: argparse.ArgumentParser, timeout: float) -> None:
    """The options of a command that talks to a running kernel (see :func:`client`)."""
    endpoint_arg(parser)
    parser.add_argument("--timeout", type=float, default=timeout, help=f"seconds to wait for the answer (default {timeout:g})")
    parser.add_argument("--curve-server-key", help="the kernel's public key file (CURVE)")
    parser.add_argument("--curve-client-key", help="this client's secret key file (CURVE)")


def client(args: argparse.Namespace, **kw: Any) -> Any:
    """A kernel client from the options :func:`client_args` declared (lazy: zmq is slow to import)."""
    from clients.client import connect

    return connect(args.endpoint, args.curve_server_key, args.curve_client_key, **kw)


def human(n: int) -> str:
    """A byte count as people read it: ``512 B``, ``72.7 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def print_json(value: Any, default: Callable[[Any], Any] | None = None) -> None:
    """The ``--json`` form of a command's output: one indented document on stdout."""
    print(json.dumps(value, indent=2, default=default))


def json_default(value: Any) -> Any:
    """Encode what JSON lacks in a kernel reply: bytes become ``{"$bytes": hex}``."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    raise TypeError(type(value).__name__)
