"""``batos kernel``: serve the image over ZeroMQ, assembled by the composition root.

The watchdog starts this command as ``python -m batos.cli kernel``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from batos.cli.common import Commands, add_command, endpoint_arg
from batos.core.errors import BatosError
from batos.core.image import open_image

if TYPE_CHECKING:
    from batos.loops.service import LoopsConfig


def register(commands: Commands) -> None:
    p = add_command(commands, "kernel", cmd_kernel, "serve the image over ZeroMQ until SIGINT/SIGTERM", image=True)
    endpoint_arg(p)
    p.add_argument("--max-msg-size", type=int, default=1 << 20, help="largest accepted frame in bytes (ZMQ_MAXMSGSIZE, default 1 MiB)")
    p.add_argument("--workers", type=int, default=4, help="threads running messages (default 4)")
    p.add_argument("--curve-secret", help="the kernel's secret key file: require CURVE authentication")
    p.add_argument("--curve-allow", help="directory of allowed client public keys (*.key)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback endpoint without CURVE")
    p.add_argument("--model", choices=["embedded", "none"], default="embedded",
                   help="the model cycles use to learn unknown messages (none: refuse them)")
    p.add_argument("--max-attempts", type=int, default=3, help="synthesis attempts (rounds of candidates) per cycle (default 3)")
    p.add_argument("--candidates", type=int, default=3, help="candidates per attempt after the first, ranked by checks (default 3)")
    p.add_argument("--model-checks", type=int, default=4, help="checks BRICK writes from the intent once the first attempt fails (default 4; 0: none)")
    p.add_argument("--no-warm", action="store_true",
                   help="do not load the models and evaluate BRICK's prompt prefix at start (the first cycle then waits ~40 s more)")
    p.add_argument("--model-threads", type=int, default=None,
                   help="cores each llama.cpp model host computes on (default: all of this machine's cores)")
    p.add_argument("--model-budget-gib", type=float, default=8.0,
                   help="memory for loaded models (GPU memory when CUDA is present); least recently used ones are unloaded (default 8)")
    methods = p.add_argument_group("stored methods (they run in sandboxed worker processes, never in the kernel)")
    methods.add_argument("--method-wall-seconds", type=float, default=10.0, help="wall-clock limit per call (default 10)")
    methods.add_argument("--method-cpu-seconds", type=int, default=10, help="CPU-time limit per call (default 10)")
    methods.add_argument("--method-memory-mib", type=int, default=512, help="address-space limit per call in MiB (default 512)")
    methods.add_argument("--unsafe-unsandboxed-methods", action="store_true",
                         help="UNSAFE: run stored methods without seccomp and Landlock when the host lacks them "
                              "(still separate, rlimited processes); without it such a host refuses to run them")
    loops = p.add_argument_group("the slower loops")
    loops.add_argument("--no-heartbeat", action="store_true", help="no self-generated goals")
    loops.add_argument("--no-loops", action="store_true",
                       help="no slower loops at all (no judging, training or goals): a kernel that only learns, as benchmarks run it")
    loops.add_argument("--idle-seconds", type=float, default=300.0, help="quiet time before the motivator proposes and runs goals (default 300)")
    loops.add_argument("--goals-per-hour", type=int, default=4, help="most self-generated goals started in any hour (default 4)")
    loops.add_argument("--judge-threshold", type=float, default=0.7, help="ALFRED's score that puts an interaction in the golden dataset")
    loops.add_argument("--golden-size", type=int, default=8, help="new golden examples that trigger a persona's LoRA training (default 8)")
    loops.add_argument("--train-steps", type=int, default=30, help="optimiser steps per LoRA training (default 30)")
    loops.add_argument("--dissonance-threshold", type=float, default=0.6, help="mean dissonance that makes ALFRED draft a codex amendment")
    loops.add_argument("--dissonance-window", type=int, default=5, help="how many recent signals that mean is taken over (default 5)")


def cmd_kernel(args: argparse.Namespace) -> int:
    from batos.cognition.cycle import CycleConfig
    from batos.kernel.compose import Assembly, assembled, hosted_personas, metalog_path
    from batos.kernel.core import KernelConfig
    from batos.kernel.server import Curve, check_exposure, run_kernel
    from batos.sandbox.runtime import MethodLimits
    from batos.schema.genesis import incarnate
    from batos.substrate.modelhost import ModelPool

    if bool(args.curve_secret) != bool(args.curve_allow):
        raise BatosError("--curve-secret and --curve-allow go together")
    curve = Curve(Path(args.curve_secret), Path(args.curve_allow)) if args.curve_secret else None
    config = KernelConfig(endpoint=args.endpoint, max_message_size=args.max_msg_size, workers=args.workers)
    check_exposure(config.endpoint, curve, args.insecure)
    if args.method_wall_seconds <= 0 or args.method_cpu_seconds < 1 or args.method_memory_mib < 64:
        raise BatosError("--method-wall-seconds must be positive, --method-cpu-seconds at least 1, --method-memory-mib at least 64")
    if args.max_attempts < 1 or args.candidates < 1 or args.model_checks < 0:
        raise BatosError("--max-attempts and --candidates must be at least 1, --model-checks at least 0")
    assembly = Assembly(kernel=config, cycle=CycleConfig(max_attempts=args.max_attempts, candidates=args.candidates, model_checks=args.model_checks),
                        loops=None if args.no_loops else loops_config(args),  # refused before anything is opened
                        metalog=metalog_path(args.image),
                        method_limits=MethodLimits(args.method_wall_seconds, args.method_cpu_seconds, args.method_memory_mib << 20),
                        unsafe_methods=args.unsafe_unsandboxed_methods, warm=not args.no_warm)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("batos.kernel")
    if args.model_threads is not None and args.model_threads < 1:
        raise BatosError(f"--model-threads must be at least 1, not {args.model_threads}")
    pool = ModelPool(budget=int(args.model_budget_gib * (1 << 30)), threads=args.model_threads)
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
    if any(t is not threading.current_thread() and not t.daemon for t in threading.enumerate()):
        # A thread the grace abandoned (a model call) would keep the process
        # alive at exit; the image is closed, so nothing is lost by leaving now.
        log.warning("leaving threads that outlived the shutdown grace")
        logging.shutdown()
        os._exit(0)
    return 0


def loops_config(args: argparse.Namespace) -> LoopsConfig:
    """The slower loops' settings from the kernel's options.

    The range checks stay here, not in the config classes, because they
    report the option that was wrong (``--golden-size``), which only the
    command line knows."""
    from batos.loops.amendments import AmendmentConfig
    from batos.loops.motivator import MotivatorConfig
    from batos.loops.service import LoopsConfig
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
