"""The Ship-of-Theseus watchdog: the kernel process is replaceable, the image is not.

It starts ``batos kernel`` as a child, checks it with ZeroMQ pings, restarts it
with back-off when it exits or stops answering, stops a crash loop at the
restart-intensity limit, applies ``update_instructions.json`` upgrades with
rollback, and writes every event to ``watchdog.jsonl``. One watchdog per image:
a lock file beside the image refuses a second one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zc.lockfile

from batos.core.errors import BatosError
from batos.core.image import file_path, normalize_uri
from clients.client import KernelClient, NoAnswer, make_ping

from .config import WatchdogConfig
from .policy import RestartPolicy
from .upgrade import Rejected, Upgrade, validate

EVENTS = "watchdog.jsonl"
CONFIG = "watchdog.json"
INSTRUCTIONS = "update_instructions.json"


class WatchdogError(BatosError):
    pass


def state_dir(image_uri: str) -> Path:
    """Beside a file image; the working directory for a ZEO image."""
    path = file_path(normalize_uri(image_uri))
    return path.parent if path is not None else Path.cwd()


def record(log: Path, event: str, **fields: Any) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"at": time.time(), "event": event, **fields}, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    events = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@dataclass
class Paths:
    directory: Path
    name: str = "image"

    @property
    def events(self) -> Path:
        return self.directory / EVENTS

    @property
    def config(self) -> Path:
        return self.directory / CONFIG

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.name}.watchdog.lock"

    @property
    def upgrades(self) -> Path:
        return self.directory / "upgrades"


class Watchdog:
    def __init__(self, image_uri: str, endpoint: str, *, instructions: Path | None = None, project: Path | None = None) -> None:
        self.image_uri = image_uri
        self.endpoint = endpoint
        image_file = file_path(normalize_uri(image_uri))
        self.paths = Paths(state_dir(image_uri), image_file.name if image_file else "zeo")
        self.instructions = instructions or self.paths.directory / INSTRUCTIONS
        self.project = project or Path(__file__).resolve().parent.parent
        self.config = WatchdogConfig.load(self.paths.config)
        self.policy = RestartPolicy(self.config.max_restarts, self.config.restart_window_s)
        self.kernel: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self._lock: zc.lockfile.LockFile | None = None

    # -- process handling -----------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        record(self.paths.events, name, **fields)
        print(f"watchdog: {name} {' '.join(f'{k}={v}' for k, v in fields.items())}", file=sys.stderr, flush=True)

    def start_kernel(self) -> None:
        command = [
            sys.executable, "-m", "batos.cli", "kernel", "--image", self.image_uri, "--endpoint", self.endpoint,
            "--workers", str(self.config.kernel_workers), "--model", self.config.kernel_model,
            "--max-attempts", str(self.config.kernel_max_attempts),
        ]
        log = open(self.paths.directory / "kernel.log", "ab")
        self.kernel = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        self.event("start", pid=self.kernel.pid)

    def stop_kernel(self) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        kernel, self.kernel = self.kernel, None
        if kernel is None or kernel.poll() is not None:
            return
        kernel.send_signal(signal.SIGTERM)
        try:
            kernel.wait(self.config.stop_grace_s)
        except subprocess.TimeoutExpired:
            kernel.kill()
            kernel.wait()
        self.event("stopped", pid=kernel.pid, code=kernel.returncode)

    def healthy(self, timeout: float | None = None) -> bool:
        """A pong, and no message left waiting for a worker longer than ``stuck_after_s``."""
        with KernelClient(self.endpoint, answer_timeout=timeout or self.config.health_timeout_s, retries=0) as client:
            try:
                reply = client.request(make_ping(), timeout=timeout or self.config.health_timeout_s)
            except NoAnswer:
                return False
        if reply.kind != "pong":
            return False
        waited = (reply.status or {}).get("oldest_queued_s") or 0.0
        if waited > self.config.stuck_after_s:
            self.event("stuck", oldest_queued_s=waited, queued=reply.status.get("queued"))
            return False
        return True

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self.kernel is None or self.kernel.poll() is not None:
                return False
            if self.healthy(timeout=min(1.0, self.config.health_timeout_s)):
                return True
        return False

    # -- the loop ---------------------------------------------------------------

    def run(self) -> int:
        self.paths.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = zc.lockfile.LockFile(str(self.paths.lock))
        except zc.lockfile.LockError:
            pid = self.paths.lock.read_text().strip() if self.paths.lock.exists() else "?"
            raise WatchdogError(f"another watchdog (pid {pid}) already supervises {self.image_uri}") from None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.event("watchdog_start", pid=os.getpid(), image=self.image_uri, endpoint=self.endpoint)
        try:
            return self._supervise()
        finally:
            self.stop_kernel()
            self.event("watchdog_stop", pid=os.getpid())
            self._lock.close()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _supervise(self) -> int:
        self.start_kernel()
        failures = 0
        while not self.stopping:
            self._sleep(self.config.health_interval_s)
            if self.stopping:
                break
            if self.instructions.exists():
                self.upgrade()
                failures = 0
                continue
            code = self.kernel.poll() if self.kernel else 0
            if code is not None:
                self.event("exit", pid=self.kernel.pid if self.kernel else None, code=code,
                           signal=signal.Signals(-code).name if code is not None and code < 0 else None)
                if not self._restart():
                    return 3
                failures = 0
                continue
            if self.healthy():
                failures = 0
                continue
            failures += 1
            self.event("unhealthy", pid=self.kernel.pid, failures=failures)
            if failures >= self.config.health_failures:
                self.stop_kernel()
                if not self._restart():
                    return 3
                failures = 0
        return 0

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def _restart(self) -> bool:
        if not self.policy.record(time.monotonic()):
            self.event("crash_loop", max_restarts=self.policy.max_restarts, window_s=self.policy.window_s)
            print(f"watchdog: the kernel restarted more than {self.policy.max_restarts} times in "
                  f"{self.policy.window_s:g}s; giving up (see {self.paths.directory / 'kernel.log'})", file=sys.stderr)
            return False
        delay = self.policy.backoff()
        self.event("restart", delay_s=delay)
        self._sleep(delay)
        if self.stopping:
            return True
        self.start_kernel()
        return True

    # -- upgrades -----------------------------------------------------------------

    def upgrade(self) -> str:
        """Validate, stop, apply, start, check; roll back if unhealthy. Returns the status."""
        raw = self.instructions.read_bytes()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.paths.upgrades.mkdir(exist_ok=True)
        report: dict[str, Any] = {"file": str(self.instructions), "at": time.time()}
        try:
            instructions = validate(raw, [self.project, self.paths.directory])
        except Rejected as exc:
            report.update(status="rejected", reasons=exc.reasons)
            return self._file_report(raw, report, stamp)
        self.event("upgrade_begin", steps=[s.kind for s in instructions.steps])
        self.stop_kernel()
        upgrade = Upgrade(self.paths.config, self.image_uri, self.project, [self.project, self.paths.directory],
                          log=lambda m: self.event("upgrade_log", message=m))
        try:
            upgrade.apply(instructions)
            self.config = WatchdogConfig.load(self.paths.config)
            self.start_kernel()
            if self.wait_ready() and self.healthy():
                report.update(status="succeeded", steps=upgrade.done)
                self.policy = RestartPolicy(self.config.max_restarts, self.config.restart_window_s)
                return self._file_report(raw, report, stamp)
            reason = "the new kernel did not become healthy"
        except Exception as exc:  # noqa: BLE001 - any failing step means roll back
            reason = f"step failed: {exc}"
        self.stop_kernel()
        failures = upgrade.rollback()
        self.config = WatchdogConfig.load(self.paths.config)
        self.start_kernel()
        healthy_again = self.wait_ready()
        report.update(status="rolled_back", reasons=[reason, *failures], steps=upgrade.done, old_kernel_healthy=healthy_again)
        return self._file_report(raw, report, stamp)

    def _file_report(self, raw: bytes, report: dict[str, Any], stamp: str) -> str:
        """Move the instructions aside with their report: never run twice."""
        base = self.paths.upgrades / f"{stamp}-{report['status']}"
        (base.with_suffix(".instructions.json")).write_bytes(raw)
        (base.with_suffix(".report.json")).write_text(json.dumps(report, indent=2, default=str) + "\n")
        self.instructions.unlink(missing_ok=True)
        self.event("upgrade", status=report["status"], reasons=report.get("reasons", []), report=str(base.with_suffix(".report.json")))
        return report["status"]


def status(image_uri: str, last: int = 15) -> str:
    paths = Paths(state_dir(image_uri))
    events = read_events(paths.events)
    if not events:
        return f"no watchdog events in {paths.events}"
    lines = []
    for e in events[-last:]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("at", 0)))
        details = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("at", "event"))
        lines.append(f"{when} {e.get('event', '?'):<15} {details}")
    running = events[-1]["event"] != "watchdog_stop"
    starts = [e for e in events if e["event"] == "start"]
    header = f"watchdog {'running' if running else 'stopped'}; {len(starts)} kernel start(s) logged in {paths.events}"
    return "\n".join([header, *lines])
