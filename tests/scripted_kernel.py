"""A real kernel process whose cycles use a scripted model (for crash tests).

``python -m tests.scripted_kernel IMAGE_URI ENDPOINT SCRIPT.json [loops]`` serves like
``batos kernel`` but replays SCRIPT's outputs instead of running a model, so a
test can kill it at a known step (a scripted ``delay``) and restart it. With
``loops``, the slower loops run too, every persona answering by rule (see
:func:`by_rule`), with a dissonance window of one signal.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import json

from batos.kernel.compose import Assembly, assembled
from batos.kernel.core import KernelConfig
from batos.kernel.server import run_kernel
from batos.loops.amendments import AmendmentConfig
from batos.loops.motivator import MotivatorConfig
from batos.loops.service import LoopsConfig
from batos.core.image import open_image
from batos.schema.genesis import incarnate
from batos.testing import ScriptedModel, SharedPersonas

AMENDMENT = {"persona": "ROBIN", "field": "method", "new_text": "Name the person affected before weighing any logic.",
             "rationale": "The last exchange conflicted because nobody named who bears the cost."}


def by_rule(system: str, prompt: str) -> str:
    """Each loop's prompt gets a fixed, valid answer: a conflicting Contrapunto, a low judge score, an amendment."""
    if "How far apart" in prompt:
        return '{"dissonance": 0.95, "reason": "they conflict"}'
    if "Judge this piece" in prompt:
        return '{"score": 0.3, "reason": "not exemplary"}'
    if "Propose ONE amendment" in prompt:
        return json.dumps(AMENDMENT)
    if "relational view" in prompt:
        return "Building on BRICK: no. Deleting them betrays the people who trusted us with their memories."
    return "Delete every record older than a month; disk space is the binding constraint."


def main(uri: str, endpoint: str, script: str, mode: str = "") -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    loops = LoopsConfig(motivator=MotivatorConfig(enabled=False), amendments=AmendmentConfig(threshold=0.5, window=1),
                        poll_seconds=0.1) if mode == "loops" else None
    assembly = Assembly(kernel=KernelConfig(endpoint=endpoint), loops=loops, metalog=Path(script).with_name("metacognition.jsonl"))
    model = ScriptedModel(by_rule) if mode == "loops" else ScriptedModel.from_file(Path(script))
    with open_image(uri, create=True) as image:
        incarnate(image)
        with assembled(image, SharedPersonas(model), assembly) as kernel:
            run_kernel(kernel, assembly.kernel)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
