"""``batos methods``: list, show, define, revert or forget an object's methods.

``define`` is the Architect's way to install a method written by hand: the
file is audited by the guardian exactly as a cycle's candidate is, and
installed with author ``architect``. (Stored methods themselves can never
install, revert or forget methods: they run in the sandbox.)

Reading works on the image directly (read-only, beside a running kernel);
a change goes to the image when it is free, else through the kernel that
holds it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from batos.cli.common import Commands, add_command, endpoint_arg
from batos.core.errors import BatosError, ImageError, MessageNotUnderstood
from batos.core.image import open_image
from batos.core.refs import name_of
from batos.core.txn import reading, transact
from batos.core.uvm import MethodRecord


def register(commands: Commands) -> None:
    p = add_command(commands, "methods", cmd_methods, "list, show, define, revert or forget methods (learned or written by hand)", image=True)
    endpoint_arg(p)
    p.add_argument("words", nargs="+", metavar="ARG",
                   help="TARGET [SELECTOR] | define TARGET SELECTOR FILE | revert TARGET SELECTOR [VERSION] | forget TARGET SELECTOR"
                        " | limits TARGET [SELECTOR] [--wall-seconds S] [--cpu-seconds S] [--memory-mib M]")
    p.add_argument("--source", action="store_true", help="print the installed source")
    p.add_argument("--wall-seconds", type=float, help="limits: wall-clock seconds per call")
    p.add_argument("--cpu-seconds", type=int, help="limits: CPU seconds per call")
    p.add_argument("--memory-mib", type=int, help="limits: address space per call in MiB")
    p.add_argument("--history", action="store_true", help="list every version")


def _target(root: Any, name: str) -> Any:
    from batos.kernel.core import KernelError, resolve_target

    try:
        return resolve_target(root, name)
    except KernelError as exc:
        raise BatosError(str(exc)) from None


def cmd_methods(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ("define", "revert", "forget", "limits") else None
    if action == "define":
        return _define(args, words)
    if action == "limits":
        return _limits(args, words)
    if action is not None:
        return _change_method(args, action, words)
    if not 1 <= len(words) <= 2:
        raise BatosError("usage: batos methods TARGET [SELECTOR] [--source|--history] | define TARGET SELECTOR FILE"
                         " | revert TARGET SELECTOR [VERSION] | forget TARGET SELECTOR")
    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        obj = _target(root, words[0])
        if len(words) == 1:
            for owner in obj.ancestors():
                for selector in owner.method_names():
                    record = owner.method_record(selector)
                    where = "" if owner is obj else f"  (from {name_of(owner)})"
                    origin = f"cycle {record.cycle}" if record.cycle else "by hand"
                    print(f"{selector:<20} v{record.version:<3} {record.author:<10} {origin}{where}")
            return 0
        selector = words[1]
        owner = next((o for o in obj.ancestors() if o.method_record(selector) is not None), None)
        if owner is None:
            raise BatosError(f"{words[0]} has no method {selector!r}")
        record = owner.method_record(selector)
        if args.history:
            for entry in record.history:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created_at))
                note = f" (revert of v{entry.reverted_from})" if entry.reverted_from else ""
                print(f"v{entry.version:<3} {when} {entry.author:<10} {('cycle ' + entry.cycle) if entry.cycle else 'by hand'}{note}")
        elif args.source:
            print(record.source, end="")
        else:
            print(f"{selector} v{record.version} by {record.author}, {len(record.history)} version(s); --source or --history for more")
    return 0


def _define(args: argparse.Namespace, words: list[str]) -> int:
    """Audit FILE as the guardian audits a candidate, then install it as the Architect's."""
    from batos.cognition.guardian import audit

    if len(words) != 3:
        raise BatosError("usage: batos methods define TARGET SELECTOR FILE")
    target, selector, path = words
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatosError(f"cannot read {path}: {exc}") from None
    report = audit(text, selector)
    if not report.accepted:
        raise BatosError(f"the guardian refuses {path} as {selector!r}:\n" + "\n".join(f"  {e}" for e in report.errors))
    assert report.source is not None
    try:
        image = open_image(args.image)
    except ImageError as exc:
        if "locked" not in str(exc):
            raise
        return _change_through_kernel(args, target, "define_method", [selector, report.source])
    with image:
        def work(root: Any) -> dict[str, Any]:
            return _target(root, target).define_method(selector, report.source).summary()

        done = transact(image.db, work, note=f"define {target}.{selector}")
    print(f"define: {target}.{selector} -> v{done['version']} by {done['author']}")
    return 0


def _limits(args: argparse.Namespace, words: list[str]) -> int:
    """Set (or, with no option, clear) an object's limits for its stored-method calls."""
    if not 1 <= len(words) <= 2:
        raise BatosError("usage: batos methods limits TARGET [SELECTOR] [--wall-seconds S] [--cpu-seconds S] [--memory-mib M]")
    selector = words[1] if len(words) == 2 else "*"
    limits: dict[str, float] = {}
    if args.wall_seconds is not None:
        limits["wall_seconds"] = args.wall_seconds
    if args.cpu_seconds is not None:
        limits["cpu_seconds"] = args.cpu_seconds
    if args.memory_mib is not None:
        limits["memory_bytes"] = args.memory_mib << 20
    kwargs: dict[str, Any] = {"selector": selector, **limits}
    try:
        image = open_image(args.image)
    except ImageError as exc:
        if "locked" not in str(exc):
            raise
        from clients.client import KernelClient, make_send

        with KernelClient(args.endpoint) as client:
            reply = client.request(make_send(words[0], "set_method_limits", [], kwargs), timeout=60)
        if reply.kind == "error":
            raise BatosError(f"[{reply.code}] {reply.message}")
        table = reply.value
    else:
        with image:
            table = transact(image.db, lambda root: _target(root, words[0]).set_method_limits(**kwargs), note=f"limits {words[0]}")
    print(f"limits of {words[0]}: {json.dumps(table) if table else 'the kernel defaults'}")
    return 0


def _change_method(args: argparse.Namespace, action: str, words: list[str]) -> int:
    """revert/forget: on the image directly, or through the kernel that holds it."""
    if not (2 <= len(words) <= (3 if action == "revert" else 2)):
        raise BatosError(f"usage: batos methods {action} TARGET SELECTOR{' [VERSION]' if action == 'revert' else ''}")
    target, selector = words[0], words[1]
    version = int(words[2]) if len(words) == 3 else None
    method = "revert_method" if action == "revert" else "forget_method"
    call_args: list[Any] = [selector] + ([version] if version is not None else [])
    try:
        image = open_image(args.image)
    except ImageError as exc:
        if "locked" not in str(exc):
            raise
        return _change_through_kernel(args, target, method, call_args)
    with image:
        def work(root: Any) -> dict[str, Any]:
            try:
                record: MethodRecord = getattr(_target(root, target), method)(*call_args)
            except MessageNotUnderstood as exc:
                raise BatosError(str(exc)) from None
            return record.summary()

        done = transact(image.db, work, note=f"{action} {target}.{selector}")
    print(f"{action}: {target}.{selector} -> " + (f"v{done['version']} (source of v{done['reverted_from']})" if action == "revert" else f"removed (was v{done['version']})"))
    return 0


def _change_through_kernel(args: argparse.Namespace, target: str, method: str, call_args: list[Any]) -> int:
    from clients.client import KernelClient, make_send

    with KernelClient(args.endpoint) as client:
        reply = client.request(make_send(target, method, call_args), timeout=60)
    if reply.kind == "error":
        raise BatosError(f"[{reply.code}] {reply.message}")
    print(f"{method} via the kernel at {args.endpoint}: {json.dumps(reply.value)}")
    return 0
