"""Several processes on one image through a real ZEO server (runzeo on loopback)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from batos.schema.genesis import incarnate
from batos.core.image import open_image
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject

from .conftest import run_python, zeo_uri

INCREMENTER = textwrap.dedent(
    """
    import sys
    from batos.core.image import open_image
    from batos.core.txn import transact

    img = open_image(sys.argv[1])
    retries = []
    def bump(root):
        root["counter"].n += 1
    for _ in range(int(sys.argv[2])):
        transact(img.db, bump, attempts=100, on_retry=lambda exc, n: retries.append(n))
    img.close()
    print(len(retries))
    """
)


def test_two_processes_see_each_others_commits(zeo_server, tmp_path):
    uri = zeo_uri(zeo_server, tmp_path, "main")
    with open_image(uri) as img:
        assert incarnate(img)
    writer = run_python(
        textwrap.dedent(
            """
            import sys
            from batos.core.image import open_image
            from batos.core.txn import transact
            with open_image(sys.argv[1]) as img:
                def work(root):
                    root["genesis"].note = "written by process A"
                    root["genesis"].define_method("shout", "def shout(self):\\n    return self.note.upper()\\n")
                transact(img.db, work)
            """
        ),
        zeo_uri(zeo_server, tmp_path, "a"),
    )
    assert writer.returncode == 0, writer.stderr
    reader = run_python(
        textwrap.dedent(
            """
            import sys
            from batos.core.image import open_image
            from batos.core.txn import reading
            from batos.sandbox.runtime import MethodRuntime
            runtime = MethodRuntime(size=1).install()  # stored methods run only in a sandbox
            with open_image(sys.argv[1]) as img, reading(img.db) as root:
                print(root["genesis"].shout())
            runtime.close()
            """
        ),
        zeo_uri(zeo_server, tmp_path, "b"),
    )
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "WRITTEN BY PROCESS A"


def test_write_conflict_is_retried_not_lost(zeo_server, tmp_path):
    """Client A reads, client B commits the same object, A's commit conflicts
    and is retried on fresh data: both increments survive."""
    with open_image(zeo_uri(zeo_server, tmp_path, "a")) as a, open_image(zeo_uri(zeo_server, tmp_path, "b")) as b:
        transact(a.db, lambda root: root.__setitem__("counter", UvmObject(n=0)))
        attempts = []
        retries = []

        def bump_with_interference(root):
            counter = root["counter"]
            value = counter.n
            attempts.append(value)
            if len(attempts) == 1:

                def bump(root_b):
                    root_b["counter"].n += 1

                transact(b.db, bump)  # another client wins the race
            counter.n = value + 1

        transact(a.db, bump_with_interference, on_retry=lambda exc, n: retries.append(type(exc).__name__))
        assert retries[0] == "ConflictError"
        assert attempts[0] == 0 and attempts[-1] == 1
        with reading(a.db) as root:
            assert root["counter"].n == 2


def test_commit_is_seen_by_the_next_transaction_of_another_client(zeo_server, tmp_path):
    """Regression (CI): client B began a transaction right after client A's
    commit returned and did not see A's new root key, because ZEO delivers
    invalidations asynchronously. Each transaction now syncs with the server."""
    with open_image(zeo_uri(zeo_server, tmp_path, "a")) as a, open_image(zeo_uri(zeo_server, tmp_path, "b")) as b:
        with reading(b.db) as root:
            assert "seen_0" not in root  # B's connection pool holds a view from before
        for i in range(40):
            transact(a.db, lambda root: root.__setitem__(f"seen_{i}", UvmObject(n=i)))
            with reading(b.db) as root:
                assert root[f"seen_{i}"].n == i


def test_concurrent_processes_lose_no_increment(zeo_server, tmp_path):
    with open_image(zeo_uri(zeo_server, tmp_path, "main")) as img:
        transact(img.db, lambda root: root.__setitem__("counter", UvmObject(n=0)))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INCREMENTER, zeo_uri(zeo_server, tmp_path, f"p{i}"), "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    with open_image(zeo_uri(zeo_server, tmp_path, "check")) as img, reading(img.db) as root:
        assert root["counter"].n == 180
