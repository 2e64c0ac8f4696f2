"""The README's first command: ./puter.sh sets up, starts the watchdog and kernel, opens the console."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from batos.core.image import open_image
from batos.core.txn import reading, transact

from .conftest import free_port
from .test_genesis import make_v1

ROOT = Path(__file__).resolve().parent.parent


def test_puter_sh_starts_the_system_and_stops_it_after_the_console(image_uri, tmp_path):
    image = tmp_path / "live_image.fs"
    with open_image(image_uri) as img:  # an image the previous release (schema v1) wrote
        transact(img.db, make_v1)
    env = {**os.environ, "BATOS_IMAGE": str(image), "BATOS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"}
    result = subprocess.run(
        [str(ROOT / "puter.sh")],
        input="genesis.define_method('hi', 'def hi(self):\\n    return \"hi from the launcher\"\\n')\ngenesis hi\n:quit\n",
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "watchdog pid" in out and f"logs: {tmp_path}/watchdog.jsonl" in out
    assert ": v1->v2" in out  # upgraded in place before the kernel started
    assert "hi from the launcher" in out
    assert out.rstrip().endswith("BAT OS stopped")
    # Everything was stopped: the image opens read-write again, with the new method in it.
    with open_image(str(image)) as img, reading(img.db) as root:
        assert root["genesis"].hi() == "hi from the launcher"
    assert "watchdog_stop" in (tmp_path / "watchdog.jsonl").read_text()
