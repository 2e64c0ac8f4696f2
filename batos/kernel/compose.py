"""The composition root: the one place that wires a serving kernel together.

The image, the personas (hosted models, or a test's scripted ones), the
cycle engine, the slower loops and the metacognition log are assembled here
and nowhere else, so ``batos kernel`` and the tests' scripted kernel start
the same object graph and close it in the same order.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from batos.cognition.cycle import CycleConfig, CycleEngine
from batos.cognition.hooks import install as install_hooks
from batos.core.image import Image, default_uri, file_path, normalize_uri
from batos.core.metalog import FILENAME, MetaLog
from batos.core.txn import reading
from batos.kernel.core import Kernel, KernelConfig
from batos.loops.service import Loops, LoopsConfig
from batos.sandbox.runtime import MethodLimits, MethodRuntime
from batos.substrate.adapters import stage_adapters
from batos.substrate.embedded import assemble as assemble_embedded
from batos.substrate.modelhost import ModelPool
from batos.substrate.models import ensure_embedded
from batos.substrate.personas import HostedPersonas, Personas, current_pins

log = logging.getLogger(__name__)


def metalog_path(image_uri: str | None) -> Path:
    """The metacognition log lives beside a file image, else in the working directory."""
    path = file_path(normalize_uri(image_uri or default_uri()))
    return (path.parent if path is not None else Path.cwd()) / FILENAME


def adapters_dir() -> Path:
    """``$BATOS_ADAPTERS``, else the ``lora_adapters/`` staging folder of the checkout."""
    env = os.environ.get("BATOS_ADAPTERS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "lora_adapters"


def hosted_personas(image: Image, pool: ModelPool) -> HostedPersonas:
    """The personas, each speaking through the model (and adapter) it is bound to in the
    image, served from the committed blobs by *pool*. First run imports the embedded
    default; adapters staged in lora_adapters/ are imported as blobs."""
    ensure_embedded(image, assemble_embedded())
    staged, skipped = stage_adapters(image, adapters_dir(), base=None)
    if staged:
        log.info("imported staged adapter(s): %s", ", ".join(staged))
    for problem in skipped:  # a bad staged adapter must not keep the kernel from starting
        log.warning("staged adapter skipped: %s", problem)
    with reading(image.db) as root:
        for persona, pin in current_pins(root).items():
            log.info("%s speaks through %s (%s, version %s)%s", persona, pin["model"], pin["backend"], pin["version"],
                     f" with adapter {pin['adapter']}" if pin["adapter"] else "")
    return HostedPersonas(image.db, pool)


@dataclass(frozen=True)
class Assembly:
    """What a serving kernel is made of; ``personas=None`` means it only refuses unknown selectors."""

    kernel: KernelConfig = KernelConfig()
    cycle: CycleConfig = CycleConfig()
    loops: LoopsConfig | None = LoopsConfig()  # None: no slower loops (a kernel that only learns)
    metalog: Path | None = None
    method_limits: MethodLimits = MethodLimits()
    unsafe_methods: bool = False  # run stored methods without seccomp/Landlock (the loud flag)
    warm: bool = False  # load the models and evaluate BRICK's stable prompt prefix at start, in the background


@contextmanager
def assembled(image: Image, personas: Personas | None, assembly: Assembly = Assembly(),
              pool: ModelPool | None = None) -> Iterator[Kernel]:
    """A kernel over *image*, with a cycle engine and loops when there are personas.

    The loops' thread is started here and stopped, and the log closed, when the
    block ends, whatever ended it.
    """
    install_hooks()
    metalog = MetaLog(assembly.metalog) if assembly.metalog is not None else None
    sandbox = MethodRuntime(size=assembly.kernel.workers, limits=assembly.method_limits, unsafe=assembly.unsafe_methods,
                            events=metalog.record if metalog is not None else None).install()
    report_protections(sandbox)
    sandbox.warm()
    engine = CycleEngine(image.db, personas, config=assembly.cycle, log=metalog, sandbox=sandbox) if personas is not None else None
    loops = Loops(image, personas, engine, assembly.loops, metalog) if personas is not None and assembly.loops is not None else None
    if engine is not None and assembly.warm:
        threading.Thread(target=engine.warm, name="warm-up", daemon=True).start()
    if loops is not None:
        loops.start()
    try:
        yield Kernel(image, assembly.kernel, engine, pool, loops, sandbox)
    finally:
        if loops is not None:
            loops.close()
        sandbox.close()
        if metalog is not None:
            metalog.close()


def report_protections(sandbox: MethodRuntime) -> None:
    """Say at start what contains stored methods; loudly when it is less than everything."""
    p = sandbox.protections
    if sandbox.refused:
        log.error("STORED METHODS WILL NOT RUN: %s", sandbox.refused)
    elif sandbox.unsafe:
        log.warning("UNSAFE: stored methods run in separate rlimited processes WITHOUT seccomp or Landlock "
                    "(--unsafe-unsandboxed-methods); learned code can reach the network and the file system")
    else:
        log.info("stored methods run sandboxed: seccomp-bpf, Landlock ABI %d, no_new_privs, rlimits "
                 "(%gs wall, %ds CPU, %d MiB per call)", p.landlock_abi, sandbox.limits.wall_seconds,
                 sandbox.limits.cpu_seconds, sandbox.limits.memory_bytes >> 20)
