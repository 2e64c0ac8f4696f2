"""Durability: reopen, and SIGKILL in the middle of a stream of commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from batos.core.check import check_image
from batos.schema.genesis import incarnate
from batos.core.image import open_image
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject

WRITER = textwrap.dedent(
    """
    import sys
    from batos.core.image import open_image
    from batos.core.txn import transact
    from batos.core.uvm import UvmObject

    img = open_image(sys.argv[1])
    i = 0
    while True:
        i += 1
        def work(root, i=i):
            counter = root["counter"]
            # Three changes that must land together or not at all.
            counter.n = i
            counter.entries = counter.entries + (i,)
            counter.last = UvmObject(payload="x" * 20000, i=i)
        transact(img.db, work)
        print(i, flush=True)
    """
)


def test_objects_slots_and_methods_survive_reopen(image_uri):
    img = open_image(image_uri, create=True)
    incarnate(img)

    def build(root):
        g = root["genesis"]
        g.favourite = {"colour": "blue"}
        g.define_method("double", "def double(self, x):\n    return 2 * x\n", author="BRICK")
        root["child"] = g.clone(favourite="green")

    transact(img.db, build)
    img.close()
    img = open_image(image_uri)
    with reading(img.db) as root:
        assert root["genesis"].favourite == {"colour": "blue"}
        assert root["child"].favourite == "green"
        assert root["child"].double(21) == 42
        assert root["genesis"].method_record("double").author == "BRICK"
    img.close()


@pytest.mark.parametrize("kill_after, delay", [(5, 0.0), (40, 0.004), (120, 0.017)])
def test_sigkill_mid_stream_keeps_every_returned_commit_and_no_partial_one(image_uri, kill_after, delay):
    img = open_image(image_uri, create=True)
    transact(img.db, lambda root: root.__setitem__("counter", UvmObject(n=0, entries=())))
    img.close()

    writer = subprocess.Popen([sys.executable, "-c", WRITER, image_uri], stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    try:
        while acknowledged < kill_after:
            line = writer.stdout.readline()
            assert line, "writer died early"
            acknowledged = int(line)
        time.sleep(delay)  # land the kill at varying points of a commit
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        rest = writer.stdout.read()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    acknowledged = max([acknowledged, *(int(x) for x in rest.split())])

    img = open_image(image_uri)  # read-write: FileStorage drops a torn tail
    with reading(img.db) as root:
        counter = root["counter"]
        n = counter.n
        # Every commit that returned is there; at most one more finished
        # between its commit and the print the kill interrupted.
        assert acknowledged <= n <= acknowledged + 1
        assert counter.entries == tuple(range(1, n + 1))
        assert counter.last.i == n
        assert len(counter.last.payload) == 20000
    report = check_image(img)
    assert report.problems == []
    img.close()
