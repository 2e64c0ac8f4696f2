"""``batos image``: create, inspect, check and migrate the living image."""

from __future__ import annotations

import argparse
from typing import Any

from batos.cli.common import Commands, add_command, add_group, human, print_json
from batos.core.image import Image, open_image, root_names, root_object, storage_size
from batos.core.refs import name_of
from batos.core.txn import reading


def register(commands: Commands) -> None:
    actions = add_group(commands, "image", "create, inspect and check the living image")
    add_command(actions, "init", cmd_image_init, "create the image and its primordial objects (idempotent)", image=True)
    p = add_command(actions, "info", cmd_image_info, "storage, size, object count, schema version, root objects", image=True)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_command(actions, "check", cmd_image_check, "verify integrity (fstest + a walk of every reachable record)", image=True)
    add_command(actions, "migrate", cmd_image_migrate, "upgrade an image written by an older release in place", image=True)
    p = add_command(actions, "show", cmd_image_show, "show one root object: parents, slots, methods", image=True)
    p.add_argument("name", help="root name, e.g. genesis")


def cmd_image_init(args: argparse.Namespace) -> int:
    from batos.schema.genesis import incarnate

    with open_image(args.image, create=True) as image:
        created = incarnate(image)
    if created:
        print(f"created {len(created)} primordial objects in {image.uri}: {', '.join(created)}")
    else:
        print(f"image {image.uri} is complete; nothing changed")
    return 0


def image_info(image: Image) -> dict[str, Any]:
    """What ``batos image info`` shows, as data: the ``--json`` document and the text come from it.

    It stays here rather than in ``batos.core.image`` because it reads the
    schema version, which genesis (a layer above the core) owns."""
    from batos.schema.migrations import schema_version

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
        print_json(info)
        return 0
    print(f"image:    {info['uri']}")
    print(f"storage:  {info['storage']}")
    print(f"size:     {human(info['size_bytes'])} ({info['size_bytes']} bytes)")
    print(f"objects:  {info['objects']}")
    print(f"schema:   {'none (run `batos image init`)' if info['schema_version'] is None else 'v%d' % info['schema_version']}")
    print(f"roots:    {len(info['roots'])}")
    for name, text in info["roots"].items():
        print(f"  {name:<18} {text[:90]}")
    return 0


def cmd_image_check(args: argparse.Namespace) -> int:
    from batos.core.check import check_image

    with open_image(args.image, read_only=args.image_is_file) as image:
        report = check_image(image)
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{verdict}: {report.objects} reachable objects, {report.blobs} blobs checked in {image.uri}")
    return 0 if report.ok else 1


def cmd_image_migrate(args: argparse.Namespace) -> int:
    from batos.schema.migrations import migrate

    with open_image(args.image) as image:
        applied = migrate(image)
    print(f"migrated {image.uri}: {', '.join(applied)}" if applied else f"image {image.uri} is up to date")
    return 0


def cmd_image_show(args: argparse.Namespace) -> int:
    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        obj = root_object(root, args.name)
        print(f"{args.name}: {obj!r}  {obj.describe()}")
        print(f"parents: {', '.join(name_of(p) for p in obj.parents) or '(none)'}")
        for slot in obj.slot_names():
            if slot != "parents":
                print(f"  slot   {slot:<16} {repr(getattr(obj, slot))[:90]}")
        for selector in obj.method_names():
            record = obj.method_record(selector)
            print(f"  method {selector:<16} v{record.version} by {record.author}")
    return 0
