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

from batos.amendments import AmendmentConfig
from batos.cycle import CycleEngine
from batos.genesis import incarnate
from batos.image import open_image
from batos.kernel import Kernel, KernelConfig
from batos.llm import ScriptedModel
from batos.loops import Loops, LoopsConfig
from batos.metalog import MetaLog
from batos.motivator import MotivatorConfig
from batos.server import run_kernel

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
    config = KernelConfig(endpoint=endpoint)
    with open_image(uri, create=True) as image:
        incarnate(image)
        log = MetaLog(Path(script).with_name("metacognition.jsonl"))
        model = ScriptedModel(by_rule) if mode == "loops" else ScriptedModel.from_file(Path(script))
        engine = CycleEngine(image.db, model, log=log)
        loops = None
        if mode == "loops":
            loops = Loops(image, engine.personas, engine, LoopsConfig(motivator=MotivatorConfig(enabled=False),
                                                                      amendments=AmendmentConfig(threshold=0.5, window=1),
                                                                      poll_seconds=0.1), log)
            loops.start()
        try:
            run_kernel(Kernel(image, config, engine, loops=loops), config)
        finally:
            if loops is not None:
                loops.close()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
