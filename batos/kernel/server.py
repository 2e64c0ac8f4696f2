"""The asyncio shell around the kernel core: a ZeroMQ ROUTER socket.

All socket I/O stays on the event loop (ZeroMQ sockets are not thread-safe);
blocking work — every ``send`` and ``inspect`` — runs in a thread pool, so a
``ping`` is answered while a long method runs. Progress from a worker thread
is handed back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from batos.core.errors import BatosError, ErrorCode
from batos.kernel.core import Kernel, KernelConfig, RequestLedger
from batos.wire.curve import CurveKeyError, secret_keypair
from batos.wire.protocol import Ack, Error, Inspect, Ping, Pong, Progress, Send, WireError, decode_request, encode

log = logging.getLogger("batos.kernel.core")


class EndpointError(BatosError):
    """An endpoint that cannot or must not be bound as asked."""


@dataclass(frozen=True)
class Curve:
    """CURVE server credentials and the directory of allowed client public keys."""

    secret_file: Path
    allow_dir: Path


def is_loopback(endpoint: str) -> bool:
    """ipc/inproc endpoints and tcp on 127.0.0.0/8, ::1 or localhost are local-only."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: not provably local


def check_exposure(endpoint: str, curve: Curve | None, insecure: bool) -> None:
    if is_loopback(endpoint) or curve is not None or insecure:
        return
    raise EndpointError(
        f"refusing to bind {endpoint} without authentication: give --curve-secret and --curve-allow "
        "(see `batos keys generate`), or --insecure to expose the kernel to the network on purpose"
    )


class KernelServer:
    def __init__(self, kernel: Kernel, config: KernelConfig, curve: Curve | None = None) -> None:
        self.kernel = kernel
        self.config = config
        self.curve = curve
        self.ledger = RequestLedger()
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="batos-worker")
        self.tasks: set[asyncio.Future[Any]] = set()
        self.bound: str | None = None
        self.abandoned = False  # messages were still running when the grace ran out
        self.queued: dict[object, float] = {}  # received, not yet on a worker thread: since when

    def _open_socket(self, context: zmq.asyncio.Context) -> zmq.asyncio.Socket:
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_size)
        sock.setsockopt(zmq.LINGER, 1000)
        # A console reconnecting with its stable identity takes over its route.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if self.curve is not None:
            try:
                public, secret = secret_keypair(self.curve.secret_file)
            except CurveKeyError as exc:
                sock.close(0)
                raise EndpointError(f"cannot start the kernel with CURVE: {exc}") from None
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
        try:
            sock.bind(self.config.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise EndpointError(f"cannot bind {self.config.endpoint}: {exc}") from None
        self.bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    async def serve(self, stop: asyncio.Event) -> None:
        context = zmq.asyncio.Context()
        auth = None
        sock = None
        try:
            if self.curve is not None:
                auth = AsyncioAuthenticator(context)
                auth.start()
                auth.configure_curve(domain="*", location=str(self.curve.allow_dir))
            sock = self._open_socket(context)
            log.info("kernel listening on %s (image %s)", self.bound, self.kernel.image.uri)
            if self.kernel.engine is not None:
                # Cycles a previous kernel left unfinished carry on in the background.
                resume = asyncio.get_running_loop().run_in_executor(self.executor, self.kernel.engine.resume_pending)
                self.tasks.add(resume)
                resume.add_done_callback(self.tasks.discard)
            await self._receive_until(sock, stop)
            await self._drain()
        finally:
            if sock is not None:
                sock.close(linger=1000)
            if auth is not None:
                auth.stop()
            context.term()
            # After the grace nothing is waited for: stuck threads are abandoned.
            self.executor.shutdown(wait=not self.abandoned, cancel_futures=True)

    async def _receive_until(self, sock: zmq.asyncio.Socket, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        while True:
            receiving = asyncio.ensure_future(sock.recv_multipart(copy=True))
            done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if receiving in done:
                self._dispatch(sock, receiving.result())
            if stopping in done:
                receiving.cancel()
                return

    async def _drain(self) -> None:
        """Graceful stop: in-flight messages finish (their replies go out) or time out."""
        if not self.tasks:
            return
        log.info("waiting up to %.0fs for %d in-flight message(s)", self.config.shutdown_grace, len(self.tasks))
        _done, pending = await asyncio.wait(self.tasks, timeout=self.config.shutdown_grace)
        if pending:
            # Stored methods are killed with their workers (their calls end at
            # once); other threads cannot be interrupted: their transactions are
            # never committed, because the process exits before they commit.
            log.warning("%d message(s) still running at shutdown; their transactions are abandoned", len(pending))
            self.abandoned = True
            if self.kernel.sandbox is not None:
                self.kernel.sandbox.close()

    def _dispatch(self, sock: zmq.asyncio.Socket, frames: list[bytes]) -> None:
        if len(frames) < 2:
            log.warning("dropped a frame with no routing envelope")
            return
        envelope, payload = frames[:-1], frames[-1]
        if len(envelope) > 2 or (len(envelope) == 2 and envelope[1] != b""):
            self._reply(sock, envelope[:1], Error(id=None, code=ErrorCode.BAD_FRAMES, message="a request is one frame (DEALER) or an empty delimiter and one frame (REQ)"))
            return
        try:
            request = decode_request(payload)
        except WireError as exc:
            log.info("refused a frame from %r: %s", envelope[0], exc)
            self._reply(sock, envelope, exc.reply)
            return
        if isinstance(request, Ping):
            try:
                self._reply(sock, envelope, Pong(id=request.id, status={**self.kernel.status(), **self._queue_status()}))
            except Exception as exc:  # noqa: BLE001 - a broken status still answers the ping
                log.exception("status failed")
                self._reply(sock, envelope, Error(id=request.id, code=ErrorCode.INTERNAL, message=f"status failed: {type(exc).__name__}: {exc}"))
            return
        seen = self.ledger.begin(envelope[0], request.id)
        if seen is RequestLedger.RUNNING:
            return  # a client retry of a message still running; its reply will come
        if seen is not None:
            self._reply(sock, envelope, seen)
            return
        task = asyncio.ensure_future(self._run(sock, envelope, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _queue_status(self) -> dict[str, Any]:
        """Messages received but waiting for a free worker thread: the
        watchdog's sign of stuck work (pings are answered on the event loop)."""
        oldest = min(self.queued.values(), default=None)
        return {"workers": self.config.workers, "queued": len(self.queued),
                "oldest_queued_s": round(time.monotonic() - oldest, 3) if oldest is not None else None}

    def _started(self, token: object, work: Callable[..., Any], *args: Any) -> Any:
        self.queued.pop(token, None)
        return work(*args)

    async def _run(self, sock: zmq.asyncio.Socket, envelope: list[bytes], request: Send | Inspect) -> None:
        """One request to its final reply, which always comes and always closes its ledger entry:
        a request left RUNNING would swallow every retry of its client."""
        loop = asyncio.get_running_loop()
        final: Any
        token = object()
        self.queued[token] = time.monotonic()
        try:
            if isinstance(request, Send):
                self._reply(sock, envelope, Ack(id=request.id))

                def progress(state: str, detail: str = "") -> None:
                    reply = Progress(id=request.id, state=state, detail=detail)
                    loop.call_soon_threadsafe(self._reply, sock, envelope, reply)

                final = await loop.run_in_executor(self.executor, self._started, token, self.kernel.send, request, progress)
            else:
                final = await loop.run_in_executor(self.executor, self._started, token, self.kernel.inspect, request)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("internal error serving request %s", request.id)
            final = Error(id=request.id, code=ErrorCode.INTERNAL, message=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.queued.pop(token, None)
        self.ledger.finish(envelope[0], request.id, final)
        self._reply(sock, envelope, final)

    def _reply(self, sock: zmq.asyncio.Socket, envelope: list[bytes], reply: Any) -> None:
        # A ROUTER send never blocks (it drops for a vanished peer), so the
        # future completes at once; a failure is only worth a log line.
        sent = sock.send_multipart([*envelope, encode(reply)])
        sent.add_done_callback(lambda f: f.exception() and log.warning("could not reply to %r: %s", envelope[0], f.exception()))


def run_kernel(kernel: Kernel, config: KernelConfig, curve: Curve | None = None) -> str:
    """Serve until SIGINT/SIGTERM; returns the endpoint that was bound."""
    server = KernelServer(kernel, config, curve)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except NotImplementedError:  # Windows: no loop signal handlers
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        await server.serve(stop)

    asyncio.run(main())
    return server.bound or config.endpoint
