"""A real kernel process whose cycles use a scripted model (for crash tests).

``python -m tests.scripted_kernel IMAGE_URI ENDPOINT SCRIPT.json`` serves like
``batos kernel`` but replays SCRIPT's outputs instead of running a model, so a
test can kill it at a known step (a scripted ``delay``) and restart it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from batos.cycle import CycleEngine
from batos.genesis import incarnate
from batos.image import open_image
from batos.kernel import Kernel, KernelConfig
from batos.llm import ScriptedModel
from batos.metalog import MetaLog
from batos.server import run_kernel


def main(uri: str, endpoint: str, script: str) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = KernelConfig(endpoint=endpoint)
    with open_image(uri, create=True) as image:
        incarnate(image)
        log = MetaLog(Path(script).with_name("metacognition.jsonl"))
        engine = CycleEngine(image.db, ScriptedModel.from_file(Path(script)), log=log)
        try:
            run_kernel(Kernel(image, config, engine), config)
        finally:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
