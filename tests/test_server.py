"""The kernel as a real process behind a real ZeroMQ socket."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import ormsgpack
import pytest
import zmq

from batos.core.check import check_image
from batos.core.image import open_image
from batos.core.txn import reading
from clients.client import CurveKeys, KernelClient, NoAnswer, make_inspect, make_ping, make_send

from .conftest import BIN, free_port
from .kernelproc import KernelProcess

SLOW = "def slow(self, seconds):\n    import time\n    time.sleep(seconds)\n    self.slept = seconds\n    return 'done'\n"
BUMP = "def bump(self):\n    self.count = (self.count if 'count' in self.slot_names() else 0) + 1\n    return self.count\n"


def define(client, selector, source):
    reply = client.request(make_send("genesis", "define_method", [selector, source]))
    assert reply.kind == "result", reply


def batos(*args, timeout=60):
    return subprocess.run([str(BIN / "batos"), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def kernel(image_uri, tmp_path):
    with KernelProcess(image_uri, log=tmp_path / "kernel.log") as k:
        yield k


def test_ping_send_and_inspect_over_a_socket(kernel):
    with KernelClient(kernel.endpoint) as client:
        pong = client.request(make_ping())
        assert pong.kind == "pong" and pong.status["pid"] == kernel.proc.pid
        define(client, "bump", BUMP)
        progress = []
        assert client.request(make_send("genesis", "bump"), on_reply=progress.append).value == 1
        assert [r.kind for r in progress] == ["ack"]
        view = client.request(make_inspect("source", "genesis", "bump")).view
        assert view["source"] == BUMP and view["author"] == "architect"


def test_ping_is_answered_while_a_long_method_runs(kernel):
    with KernelClient(kernel.endpoint) as setup:
        define(setup, "slow", SLOW)
    result = {}

    def long_send():
        with KernelClient(kernel.endpoint) as client:
            result["reply"] = client.request(make_send("genesis", "slow", [3]))

    worker = threading.Thread(target=long_send)
    worker.start()
    with KernelClient(kernel.endpoint) as client:
        deadline = time.monotonic() + 10
        while True:  # wait until the slow message is running, then ping
            status = client.request(make_ping()).status
            if status["in_flight"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status["in_flight"] == 1  # answered while the method was still running
    worker.join()
    assert result["reply"].value == "done"


def test_sigterm_lets_in_flight_messages_finish(image_uri, tmp_path):
    k = KernelProcess(image_uri, log=tmp_path / "kernel.log")
    with k:
        with KernelClient(k.endpoint) as client:
            define(client, "slow", SLOW)
            acked = threading.Event()
            replies = {}

            def on_reply(reply):
                if reply.kind == "ack":
                    acked.set()

            sender = threading.Thread(target=lambda: replies.setdefault("r", client.request(make_send("genesis", "slow", [1.5]), on_reply=on_reply)))
            sender.start()
            assert acked.wait(10)
            time.sleep(0.2)
            assert k.stop(signal.SIGTERM) == 0
            sender.join()
        assert replies["r"].value == "done"
    assert "stopped; image closed" in k.log()
    with open_image(image_uri) as img:  # not locked any more: the storage was closed
        assert check_image(img).problems == []
        with reading(img.db) as root:
            assert root["genesis"].slept == 1.5


def test_oversize_frames_are_dropped_and_the_kernel_lives_on(image_uri, tmp_path):
    with KernelProcess(image_uri, "--max-msg-size", "4096", log=tmp_path / "kernel.log") as k:
        ctx = zmq.Context()
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(k.endpoint)
        raw.send(ormsgpack.packb({"v": 1, "id": "big", "kind": "send", "target": "genesis", "selector": "about", "args": ["x" * 10_000]}))
        assert raw.poll(1000) == 0  # no reply is possible: the peer was disconnected
        raw.close()
        ctx.term()
        with KernelClient(k.endpoint) as client:
            assert client.request(make_ping()).kind == "pong"
            small_but_bad = client.request(make_send("genesis", "about", ["x" * 100, 1]))
            assert small_but_bad.kind == "error" and small_but_bad.code == "bad_arguments"


def test_req_clients_and_odd_envelopes(kernel):
    ctx = zmq.Context()
    try:
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(kernel.endpoint)
        req.send(ormsgpack.packb({"v": 1, "id": "q", "kind": "ping"}))
        assert req.poll(5000)
        assert ormsgpack.unpackb(req.recv())["kind"] == "pong"
        req.close()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(kernel.endpoint)
        dealer.send_multipart([b"one", b"two", b"three"])
        assert dealer.poll(5000)
        reply = ormsgpack.unpackb(dealer.recv_multipart()[-1])
        assert (reply["kind"], reply["code"]) == ("error", "bad_frames")
        dealer.close()
    finally:
        ctx.term()


def test_a_resent_request_is_executed_once(kernel):
    with KernelClient(kernel.endpoint) as client:
        define(client, "bump", BUMP)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"pirate")
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(kernel.endpoint)
    frame = ormsgpack.packb({"v": 1, "id": "same", "kind": "send", "target": "genesis", "selector": "bump"})
    for _ in range(3):
        dealer.send(frame)
    time.sleep(0.5)
    dealer.send(frame)  # after it finished: the cached reply comes back
    results = []
    while dealer.poll(1000):
        reply = ormsgpack.unpackb(dealer.recv())
        if reply["kind"] == "result":
            results.append(reply["value"])
    dealer.close()
    ctx.term()
    assert results and set(results) == {1}
    with KernelClient(kernel.endpoint) as client:
        assert client.request(make_send("genesis", "count")).value == 1


def test_cli_send_and_ping(kernel):
    e = ["--endpoint", kernel.endpoint]
    ping = batos("ping", *e)
    assert ping.returncode == 0 and f"pid {kernel.proc.pid}" in ping.stdout
    assert json.loads(batos("ping", *e, "--json").stdout)["pid"] == kernel.proc.pid
    src = "def add(self, a, b=0):\n    return a + b\n"
    assert batos("send", *e, "genesis", "define_method", "add", src).returncode == 0
    assert batos("send", *e, "genesis", "add", "2", "--kw", "b=3").stdout.strip() == "5"
    assert batos("send", *e, "genesis", "add", "[1]", "[2, 3]").stdout.strip().replace("\n", "").replace(" ", "") == "[1,2,3]"
    assert batos("send", *e, "genesis", "add", "hello", '" world"').stdout.strip() == "hello world"
    as_json = batos("send", *e, "--json", "genesis", "add", "1", "1")
    assert json.loads(as_json.stdout) == {**json.loads(as_json.stdout), "kind": "result", "value": 2}
    error = batos("send", *e, "genesis", "add")
    assert error.returncode == 1
    assert error.stderr.startswith("batos: error: [bad_arguments] add: missing a required argument: 'a'")
    bad_json = batos("send", *e, "--json", "genesis", "nothing")
    assert bad_json.returncode == 1 and json.loads(bad_json.stdout)["code"] == "not_understood"
    bad_kw = batos("send", *e, "genesis", "add", "--kw", "1x=2")
    assert bad_kw.returncode == 1 and "KEY=VALUE" in bad_kw.stderr


def test_cli_with_no_kernel_listening():
    e = ["--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1"]
    for args in (["ping", *e], ["send", *e, "genesis", "about"]):
        result = batos(*args)
        assert result.returncode == 3
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().startswith("batos: error: no kernel answering at tcp://127.0.0.1:")


def test_non_loopback_bind_requires_curve_or_insecure(image_uri):
    result = batos("kernel", "--image", image_uri, "--endpoint", f"tcp://0.0.0.0:{free_port()}")
    assert result.returncode == 1
    assert "refusing to bind" in result.stderr and "--insecure" in result.stderr
    assert "Traceback" not in result.stderr


def test_curve_lets_only_allowed_clients_in(image_uri, tmp_path):
    keys, allowed, strangers = tmp_path / "keys", tmp_path / "allowed", tmp_path / "strangers"
    assert batos("keys", "generate", "--dir", str(keys), "server", "client").returncode == 0
    assert batos("keys", "generate", "--dir", str(strangers), "mallory").returncode == 0
    allowed.mkdir()
    (allowed / "client.key").write_bytes((keys / "client.key").read_bytes())
    port = free_port()
    k = KernelProcess(
        image_uri,
        "--curve-secret", str(keys / "server.key_secret"), "--curve-allow", str(allowed),
        endpoint=f"tcp://0.0.0.0:{port}",
        log=tmp_path / "kernel.log",
    )
    local = f"tcp://127.0.0.1:{port}"
    try:
        good = CurveKeys(keys / "server.key", keys / "client.key_secret")
        with KernelClient(local, curve=good) as client:
            assert client.request(make_ping(), timeout=20).kind == "pong"
        bad = CurveKeys(keys / "server.key", strangers / "mallory.key_secret")
        for curve in (bad, None):
            with KernelClient(local, curve=curve, answer_timeout=0.5, retries=1) as client:
                with pytest.raises(NoAnswer):
                    client.request(make_ping(), timeout=3)
        cli = batos("ping", "--endpoint", local, "--curve-server-key", str(keys / "server.key"),
                    "--curve-client-key", str(keys / "client.key_secret"))
        assert cli.returncode == 0, cli.stderr
    finally:
        k.stop()


def test_missing_or_public_only_key_files_are_clear_errors(image_uri, tmp_path):
    assert batos("keys", "generate", "--dir", str(tmp_path / "k"), "server", "client").returncode == 0
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    for secret, message in [(tmp_path / "absent", "cannot start the kernel with CURVE: cannot load CURVE key"), (tmp_path / "k" / "server.key", "holds no secret key")]:
        result = batos("kernel", "--image", image_uri, "--endpoint", endpoint, "--curve-secret", str(secret), "--curve-allow", str(tmp_path))
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    client = batos("ping", "--endpoint", "tcp://127.0.0.1:1", "--curve-server-key", str(tmp_path / "absent"), "--curve-client-key", str(tmp_path / "absent"))
    assert client.returncode == 1 and "cannot load CURVE key" in client.stderr and "Traceback" not in client.stderr


def test_a_bug_in_inspect_is_answered_internal_and_closes_the_ledger_entry(image):
    """Regression: a stray exception used to leave no reply and a RUNNING ledger entry,
    so every retry of the client was silently dropped."""
    import asyncio

    from batos.kernel.core import Kernel, KernelConfig
    from batos.kernel.server import KernelServer

    class BrokenInspect(Kernel):
        def inspect(self, request):
            raise RuntimeError("inspect bug")

    config = KernelConfig(endpoint=f"tcp://127.0.0.1:{free_port()}", workers=1)
    server = KernelServer(BrokenInspect(image, config), config)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve(stop)), daemon=True)
    thread.start()
    try:
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(config.endpoint)
        frame = ormsgpack.packb({"v": 1, "id": "same", "kind": "inspect", "what": "roots"})
        replies = []
        for _ in range(2):  # the first request, then the client's retry
            dealer.send(frame)
            assert dealer.poll(10_000), "no reply"
            replies.append(ormsgpack.unpackb(dealer.recv()))
        dealer.close()
        ctx.term()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
    assert replies == [{"v": 1, "id": "same", "kind": "error", "code": "internal",
                        "message": "internal error: RuntimeError: inspect bug", "exc_type": None}] * 2
