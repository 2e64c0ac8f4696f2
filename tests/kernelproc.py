"""A real ``batos kernel`` process for tests, on a free loopback port."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from clients.client import KernelClient, NoAnswer, make_ping

from .conftest import BIN, free_port


class KernelProcess:
    def __init__(self, image_uri: str, *extra: str, endpoint: str | None = None, log: Path | None = None, model: str = "none") -> None:
        """``model="none"`` unless a test is about learning: an unknown selector
        is then refused at once instead of starting a cycle."""
        self.endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        self.log_path = log
        self.proc = subprocess.Popen(
            [str(BIN / "batos"), "kernel", "--image", image_uri, "--endpoint", self.endpoint, "--model", model, *extra],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb") if log else subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 30.0, connect: str | None = None) -> dict:
        deadline = time.monotonic() + timeout
        with KernelClient(connect or self.endpoint, answer_timeout=0.5, retries=10**6) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kernel exited with {self.proc.returncode}: {self.log()}")
                try:
                    return client.request(make_ping(), timeout=max(0.1, min(2.0, deadline - time.monotonic()))).status
                except NoAnswer:
                    if time.monotonic() > deadline:
                        raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def __enter__(self) -> "KernelProcess":
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
