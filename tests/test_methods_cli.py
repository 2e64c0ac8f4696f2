"""``batos methods``: list, source, history, revert and forget — on the image or through the kernel."""

from __future__ import annotations

import subprocess

from batos.cognition.cycle import CycleEngine
from batos.core.image import open_image
from batos.kernel.core import Kernel
from batos.testing import ScriptedModel, SharedPersonas
from batos.core.txn import reading, transact
from batos.wire.protocol import Send

from .conftest import BIN
from .kernelproc import KernelProcess


def batos(*args):
    return subprocess.run([str(BIN / "batos"), *args], capture_output=True, text=True, timeout=60)


def learn_and_edit(image):
    engine = CycleEngine(image.db, SharedPersonas(ScriptedModel(["```python\ndef double(self, x):\n    return 2 * x\n```"])))
    reply = Kernel(image, engine=engine).send(Send(v=1, id="1", kind="send", target="genesis", selector="double", args=[2], intent="double it"))
    assert reply.value == 4
    transact(image.db, lambda root: root["genesis"].define_method("double", "def double(self, x):\n    return x + x + 1\n"))


def test_list_source_history_revert_forget_on_the_image(image_uri, image):
    learn_and_edit(image)
    image.close()
    listing = batos("methods", "genesis", "--image", image_uri)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["double", "v2", "architect"]
    assert any(line.startswith("about") and "(from traits)" in line for line in lines)
    assert batos("methods", "genesis", "double", "--source", "--image", image_uri).stdout == "def double(self, x):\n    return x + x + 1\n"
    history = batos("methods", "genesis", "double", "--history", "--image", image_uri).stdout.splitlines()
    assert len(history) == 2 and "BRICK" in history[0] and "cycle " in history[0] and "by hand" in history[1]
    revert = batos("methods", "revert", "genesis", "double", "--image", image_uri)
    assert revert.returncode == 0 and "v3 (source of v1)" in revert.stdout
    with open_image(image_uri, read_only=True) as img, reading(img.db) as root:
        assert root["genesis"].double(5) == 10
    forget = batos("methods", "forget", "genesis", "double", "--image", image_uri)
    assert forget.returncode == 0 and "removed (was v3)" in forget.stdout
    with open_image(image_uri, read_only=True) as img, reading(img.db) as root:
        assert root["genesis"].method_names() == []


def test_bad_method_commands_are_clear_errors(image_uri, image):
    image.close()
    for args, message in [
        (["methods", "genesis", "nothing", "--source"], "has no method 'nothing'"),
        (["methods", "nobody"], "no root object named 'nobody'"),
        (["methods", "revert", "traits", "about"], "only one version"),
        (["methods", "forget", "genesis", "about"], "does not understand 'about'"),
        (["methods", "revert", "genesis"], "usage: batos methods revert"),
    ]:
        result = batos(*args, "--image", image_uri)
        assert result.returncode == 1, (args, result.stdout)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_revert_goes_through_the_running_kernel(image_uri, image, tmp_path):
    learn_and_edit(image)
    image.close()
    with KernelProcess(image_uri, log=tmp_path / "k.log") as kernel:
        result = batos("methods", "revert", "genesis", "double", "1", "--image", image_uri, "--endpoint", kernel.endpoint)
        assert result.returncode == 0, result.stderr
        assert "via the kernel" in result.stdout and '"version": 3' in result.stdout
        listing = batos("methods", "genesis", "--image", image_uri)  # read-only beside the kernel
        assert listing.stdout.splitlines()[0].split()[:2] == ["double", "v3"]


def test_define_audits_the_file_and_installs_it_as_the_architects(image_uri, image, tmp_path):
    image.close()
    good = tmp_path / "greet.py"
    good.write_text("def greet(self, who):\n    return f'hello {who}'\n")
    done = batos("methods", "define", "genesis", "greet", str(good), "--image", image_uri)
    assert (done.returncode, done.stdout) == (0, "define: genesis.greet -> v1 by architect\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef greet(self, who):\n    return os.getcwd()\n")
    refused = batos("methods", "define", "genesis", "greet", str(bad), "--image", image_uri)
    assert refused.returncode == 1
    assert "the guardian refuses" in refused.stderr and "Line 1: import of 'os' is not allowed" in refused.stderr
    missing = batos("methods", "define", "genesis", "greet", str(tmp_path / "nope.py"), "--image", image_uri)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    with open_image(image_uri) as img, reading(img.db) as root:
        record = root["genesis"].method_record("greet")
        assert (record.version, record.author, record.source) == (1, "architect", "def greet(self, who):\n    return f'hello {who}'\n")
        assert root["genesis"].greet("you") == "hello you"  # in the session's sandbox


def test_limits_per_object_and_selector_reach_the_sandbox(image_uri, image):
    transact(image.db, lambda root: root["genesis"].define_method("spin", "def spin(self):\n    while True:\n        pass\n"))
    image.close()
    done = batos("methods", "limits", "genesis", "spin", "--wall-seconds", "1.5", "--cpu-seconds", "5", "--image", image_uri)
    assert (done.returncode, done.stdout) == (0, 'limits of genesis: {"spin": {"wall_seconds": 1.5, "cpu_seconds": 5}}\n')
    from batos.core.errors import MethodFault

    with open_image(image_uri) as img, reading(img.db) as root:
        try:
            root["genesis"].spin()
        except MethodFault as exc:
            assert (exc.code, str(exc)) == ("method_timeout", "spin did not finish within its wall-clock limit of 1.5s and was killed; its changes are discarded")
        else:
            raise AssertionError("spin returned")
    cleared = batos("methods", "limits", "genesis", "spin", "--image", image_uri)
    assert cleared.stdout == "limits of genesis: the kernel defaults\n"
    bad = batos("methods", "limits", "genesis", "_p_jar", "--wall-seconds", "1", "--image", image_uri)
    assert bad.returncode == 1 and "names starting with '_' are private" in bad.stderr
