"""The metacognition log: every cycle event as one JSON line, via aiologger.

The cycle runs in worker threads, while aiologger is asyncio-native, so the
log owns a small event loop in a daemon thread; ``record`` hands events to it
thread-safely and never blocks the caller on disk I/O. ``close`` drains the
queue, so a graceful kernel shutdown loses no line.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from aiologger import Logger
from aiologger.formatters.base import Formatter
from aiologger.handlers.files import AsyncFileHandler
from aiologger.levels import LogLevel

FILENAME = "metacognition.jsonl"


class _JsonLine(Formatter):
    def format(self, record: Any) -> str:
        return json.dumps(record.msg, default=repr, sort_keys=True)


class MetaLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="batos-metalog", daemon=True)
        self._thread.start()
        handler = AsyncFileHandler(str(path), mode="a", encoding="utf-8")
        handler.formatter = _JsonLine()
        self._logger = Logger(name="batos.metacognition", level=LogLevel.INFO)
        self._logger.add_handler(handler)
        self._pending: set[Any] = set()

    def record(self, event: str, **fields: Any) -> None:
        entry = {"at": time.time(), "event": event, **fields}

        async def write() -> None:
            await self._logger.info(entry)

        future = asyncio.run_coroutine_threadsafe(write(), self._loop)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def close(self) -> None:
        for future in list(self._pending):
            future.result(timeout=10)
        asyncio.run_coroutine_threadsafe(self._logger.shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def read_events(path: Path, cycle: str | None = None, follow: bool = False, poll: float = 0.5) -> Iterator[dict[str, Any]]:
    """Events from the log, optionally for one cycle; ``follow`` waits for more."""
    with open(path, encoding="utf-8") as handle:
        while True:
            line = handle.readline()
            if not line:
                if not follow:
                    return
                time.sleep(poll)
                continue
            if not line.endswith("\n"):  # a line still being written
                handle.seek(handle.tell() - len(line))
                time.sleep(poll)
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn line from a crash: skip it, keep the rest
            if cycle is None or str(event.get("cycle", "")).startswith(cycle):
                yield event


def format_event(event: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(event.get("at", 0)))
    skip = {"at", "event", "cycle"}
    details = " ".join(f"{k}={v}" for k, v in event.items() if k not in skip and v not in (None, "", [], {}))
    return f"{when} {str(event.get('cycle', '-'))[:8]:<8} {event.get('event', '?'):<12} {details}"
