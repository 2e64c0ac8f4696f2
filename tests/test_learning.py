"""Learning across real kernel processes: crash and resume, and the real embedded model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from batos.core.image import open_image
from batos.core.txn import reading
from clients.client import KernelClient, NoAnswer, make_ping, make_send

from .conftest import BIN, free_port
from .kernelproc import KernelProcess

GOOD = "```python\nimport math\n\ndef factorial(self, n):\n    return math.factorial(n)\n```"
ROOT = Path(__file__).resolve().parent.parent


def scripted_kernel(image_uri: str, endpoint: str, script: list, directory: Path) -> subprocess.Popen:
    path = directory / f"script-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(script))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scripted_kernel", image_uri, endpoint, str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "scripted.log", "ab"),
    )


def wait_for(endpoint: str, proc: subprocess.Popen) -> None:
    with KernelClient(endpoint, answer_timeout=0.5, retries=10**6) as client:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.request(make_ping(), timeout=1)
                return
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.1)
    raise RuntimeError("scripted kernel did not start")


def cycle_states(image_uri: str) -> dict[str, str]:
    with open_image(image_uri, read_only=True) as img, reading(img.db) as root:
        return {cid: c.state for cid, c in root["orchestrator"].cycles.items()}


def test_kill_9_mid_cycle_then_restart_finishes_the_cycle(image_uri, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    # The first kernel stalls inside synthesis (model inference, outside any transaction).
    first = scripted_kernel(image_uri, endpoint, [{"text": GOOD, "delay": 60}], tmp_path)
    wait_for(endpoint, first)
    states: list[str] = []
    synthesizing = threading.Event()

    def on_reply(reply) -> None:
        if reply.kind == "progress":
            states.append(reply.state)
            if reply.state == "SYNTHESIZING":
                synthesizing.set()

    def architect() -> None:
        with KernelClient(endpoint, retries=0) as client:
            try:
                # DELEGATING loads the embedding model cold (8-9 s on these 2 cores): a shorter
                # wait missed SYNTHESIZING's progress and failed the test on a slow machine
                client.request(make_send("genesis", "factorial", [5], intent="n!"), timeout=30, on_reply=on_reply)
            except NoAnswer:
                pass  # the kernel dies under this request

    waiting = threading.Thread(target=architect)
    waiting.start()
    assert synthesizing.wait(30), states
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    waiting.join()
    assert list(cycle_states(image_uri).values()) == ["SYNTHESIZING"]

    second = scripted_kernel(image_uri, endpoint, [GOOD], tmp_path)
    try:
        wait_for(endpoint, second)
        with KernelClient(endpoint) as client:
            # Sent again: joins the resumed cycle (or finds the method installed).
            assert client.request(make_send("genesis", "factorial", [5]), timeout=60).value == 120
            status = client.request(make_ping()).status
            assert status["model_calls"] == 1  # only the resumed synthesis: the steps before it were committed
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert list(cycle_states(image_uri).values()) == ["COMPLETE"]
    events = [json.loads(line) for line in (tmp_path / "metacognition.jsonl").read_text().splitlines()]
    assert any(e["event"] == "resumed" for e in events)


def test_end_to_end_with_the_real_embedded_model(image_uri, tmp_path):
    """The product path: a kernel with the embedded 1.5B model learns factorial,
    and after a restart answers from the image with no model call."""
    log = tmp_path / "kernel.log"
    with KernelProcess(image_uri, log=log, model="embedded") as kernel:
        e = ["--endpoint", kernel.endpoint]
        sent = subprocess.run(
            [str(BIN / "batos"), "send", *e, "--json", "genesis", "factorial", "5", "--intent", "return n factorial (n!), e.g. factorial(4) == 24"],
            capture_output=True, text=True, timeout=600,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr + kernel.log()
        assert json.loads(sent.stdout)["value"] == 120
        states = [line.split("]")[0].lstrip("[") for line in sent.stderr.splitlines() if line.startswith("[")]
        assert states[0] == "LEARNING" and states[-1] == "COMPLETE"
        status = subprocess.run([str(BIN / "batos"), "models", "status", *e], capture_output=True, text=True, timeout=60)
        assert status.stdout.startswith("loaded:  embedded-default"), status.stdout + status.stderr
        assert "swap:    loaded embedded-default" in status.stdout
        # a Contrapunto on the real model: both personas answer, ROBIN's judgement is grammar-constrained JSON
        mused = subprocess.run([str(BIN / "batos"), "send", *e, "--json", "genesis", "contemplate", "--intent",
                                "Should a kernel delete methods nobody has called for a year?"], capture_output=True, text=True, timeout=600)
        assert mused.returncode == 0, mused.stdout + mused.stderr + kernel.log()
        exchange = json.loads(mused.stdout)["value"]
        assert exchange["brick"] and exchange["robin"] and exchange["brick"] != exchange["robin"]
        assert exchange["judged"] is not None and 0 <= exchange["dissonance"] <= 1, exchange["judge_reason"]
        assert kernel.stop() == 0
    with KernelProcess(image_uri, log=tmp_path / "kernel2.log", model="embedded") as kernel:
        again = subprocess.run([str(BIN / "batos"), "send", "--endpoint", kernel.endpoint, "genesis", "factorial", "5"],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and again.stdout.strip() == "120"
        with KernelClient(kernel.endpoint) as client:
            status = client.request(make_ping()).status
        assert status["model_calls"] == 0 and status["models_loaded"] == []
        methods = subprocess.run([str(BIN / "batos"), "log", "--image", image_uri], capture_output=True, text=True)
        assert "finished" in methods.stdout and "COMPLETE" in methods.stdout
