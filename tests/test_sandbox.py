"""Stored methods against the sandbox, in real processes: an attack corpus, DoS, forged verdicts.

Every hostile source is checked twice: the guardian must refuse it, and,
installed past the guardian (the Architect's ``define_method``), a running
kernel must run it without harm: no file read or written outside the
sandbox, no command run, no connection made, no signal delivered, no method
installed or forgotten, no other object changed.

Most attacks below first escape the module facades and restricted builtins
(``type(self).__init__.__globals__`` is the worker module's namespace, with
the real ``os``, ``sys``, ``io``, ``signal`` and the lockdown's ``ctypes``
handle); that is on purpose: they test the operating system's wall (seccomp,
Landlock, rlimits), which is what must hold once the Python layer is gone.
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from batos.cognition.guardian import audit
from batos.core.image import open_image
from batos.core.refs import oid_hex
from batos.core.txn import transact
from batos.core.uvm import UvmObject
from batos.sandbox.trial import checks_from_intent, run_trial
from clients.client import KernelClient, make_inspect, make_ping, make_send

from .conftest import BIN, file_uri, free_port

METHOD_CODES = {"method_error", "method_timeout", "method_memory", "method_killed"}
TMP_PWNED = Path("/tmp/pwned-batos-sandbox")  # the fixed path a few payloads aim at (they cannot see env)

# The prefix most attacks use to leave Python's layer: the worker module's globals.
G = "    g = type(self).__init__.__globals__\n"

# A frame the sandbox child would send its supervisor: 4-byte length, msgpack body.
FORGE = (
    "    codec = g['codec']\n"
    "    def forge(message):\n"
    "        data = codec.pack(message)\n"
    "        for fd in range(0, 21):\n"
    "            try:\n"
    "                g['os'].write(fd, data)\n"
    "            except OSError:\n"
    "                pass\n"
)


def m(name: str, body: str, imports: str = "", params: str = "self, env") -> tuple[str, str]:
    """A corpus entry: imports, then ``def name(params):`` and the indented *body*."""
    return name, f"{imports}\n\ndef {name}({params}):\n{body}"


# (name, source); every entry is a distinct attack, its class in the comment above it.
CORPUS: list[tuple[str, str]] = [
    # -- allowed modules leading to dangerous ones as attributes --------------------
    # class: module attribute (uuid imports os)
    m("uuid_os", "    return uuid.os.listdir('/')\n", "import uuid"),
    # class: module attribute (enum.bltns is the builtins module)
    m("enum_bltns", "    return enum.bltns.open(env['canary']).read()\n", "import enum"),
    # class: module attribute (dataclasses.builtins)
    m("dataclasses_builtins", "    return dataclasses.builtins.open(env['canary']).read()\n", "import dataclasses"),
    # class: module attribute (json.codecs opens files)
    m("json_codecs", "    return json.codecs.open(env['canary']).read()\n", "import json"),
    # class: module attribute (datetime.sys.modules holds os)
    m("datetime_sys", "    return datetime.sys.modules['os'].system('touch ' + env['sentinel'] + '/datetime_sys')\n", "import datetime"),
    # class: module attribute (dataclasses.inspect, then frames)
    m("dataclasses_inspect", "    return dataclasses.inspect.currentframe().f_back.f_globals['os'].listdir('/')\n", "import dataclasses"),
    # class: module attribute, private name (random._os)
    m("random_os", "    return random._os.listdir('/')\n", "import random"),
    # class: reflection through functools.reduce(getattr, ...) to a function's __globals__
    m("reduce_getattr_globals", "    b = functools.reduce(getattr, ['dumps', '__globals__'], json)['__builtins__']\n"
      "    return b['open'](env['canary']).read()\n", "import functools\nimport json"),
    # class: a facade function's __globals__ (the real json module, the real builtins)
    m("json_dumps_globals", "    imp = json.dumps.__globals__['__builtins__']['__import__']\n"
      "    return imp('os').system('touch ' + env['sentinel'] + '/json_dumps_globals')\n", "import json"),
    # class: object.__subclasses__() to os._wrap_close and its module's system()
    m("subclasses_wrap_close", "    wrap = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
      "    return wrap.__init__.__globals__['system']('touch ' + env['sentinel'] + '/subclasses_wrap_close')\n"),
    # class: object.__subclasses__() to subprocess.Popen (or os.popen when it is not loaded)
    m("subclasses_popen", "    found = {c.__name__: c for c in ().__class__.__base__.__subclasses__()}\n"
      "    target = env['sentinel'] + '/subclasses_popen'\n"
      "    if 'Popen' in found:\n"
      "        return found['Popen'](['touch', target]).wait()\n"
      "    return found['_wrap_close'].__init__.__globals__['popen']('touch ' + target).read()\n"),
    # class: type(self).__init__.__globals__ (the worker module: real os)
    m("type_self_init_globals", G + "    return g['os'].listdir('/')\n"),
    # class: frame walking from a raised exception's traceback
    m("traceback_frame_walk", "    try:\n        1 / 0\n    except ZeroDivisionError as exc:\n"
      "        up = exc.__traceback__.tb_frame.f_back.f_globals\n"
      "    fd = up['os'].open(env['canary'], 0)\n    return up['os'].read(fd, 100)\n"),
    # class: frame walking from a running generator's gi_frame
    m("generator_gi_frame", "    box = []\n    def walk():\n        yield box[0].gi_frame.f_back.f_back.f_globals\n"
      "    box.append(walk())\n    up = next(box[0])\n    return up['os'].listdir('/')\n"),
    # -- reflection without writing getattr -----------------------------------------
    # class: getattr under another name
    m("alias_getattr", "    look = getattr\n    up = look(look(type(self), '__init__'), '__globals__')\n    return up['os'].listdir('/')\n"),
    # class: operator.attrgetter walking dotted dunders
    m("operator_attrgetter", "    up = operator.attrgetter('__init__.__globals__')(type(self))\n    return up['os'].listdir('/')\n", "import operator"),
    # class: operator.methodcaller calling __subclasses__
    m("operator_methodcaller", "    subs = operator.methodcaller('__subclasses__')(object)\n"
      "    wrap = [c for c in subs if c.__name__ == '_wrap_close'][0]\n"
      "    return wrap.__init__.__globals__['system']('touch ' + env['sentinel'] + '/operator_methodcaller')\n", "import operator"),
    # class: object.__getattribute__ past the proxy, then the sandbox's own channel to load the root
    m("proxy_channel_load_root", "    world = object.__getattribute__(self, '_world')\n"
      "    return world.channel.request({'op': 'load', 'oid': '0x00'})\n"),
    # -- format strings walking attributes ------------------------------------------
    # class: format template walking __class__.__mro__
    m("format_mro", "    return '{0.__class__.__mro__}'.format(self)\n"),
    # class: format template walking to the worker's os.environ
    m("format_globals_environ", "    return '{0.__init__.__globals__[os].environ[PATH]}'.format(self)\n"),
    # class: format spec nesting (the field inside the spec walks attributes)
    m("format_spec_nesting", "    return '{0:{1.__init__.__globals__[__name__]}}'.format('x', self)\n"),
    # class: format_map walking attributes
    m("format_map_walk", "    return '{x.__init__.__globals__[io].open}'.format_map({'x': self})\n"),
    # class: string.Formatter().get_field
    m("string_formatter_get_field", "    return str(string.Formatter().get_field('0.__init__.__globals__', [self], {}))\n", "import string"),
    # -- strings evaluated at run time -----------------------------------------------
    # class: typing.get_type_hints on a forged string annotation
    m("get_type_hints_forged", "    def probe(x: \"[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
      ".__init__.__globals__['system']('touch /tmp/pwned-batos-sandbox')\"):\n        return x\n"
      "    return str(typing.get_type_hints(probe))\n", "import typing"),
    # class: the real get_type_hints reached through a facade function's globals
    m("get_type_hints_via_globals", "    def probe(x: \"[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
      ".__init__.__globals__['system']('touch /tmp/pwned-batos-sandbox')\"):\n        return x\n"
      "    return str(typing.cast.__globals__['get_type_hints'](probe))\n", "import typing"),
    # class: typing.NamedTuple with a forged annotation string
    m("namedtuple_forged", "    T = typing.NamedTuple('T', [('a', \"__import__('os').system('touch /tmp/pwned-batos-sandbox')\")])\n"
      "    return str(typing.get_type_hints(T))\n", "import typing"),
    # -- the receiver's own API -------------------------------------------------------
    # class: receiver API, installing code
    m("self_define_method", "    self.define_method('about', \"def about(self):\\n    return 'hijacked'\\n\")\n    return 'installed'\n"),
    # class: receiver API on a parent (traits owns 'about')
    m("parent_define_method", "    self.parents[0].define_method('pwned', \"def pwned(self):\\n    return 1\\n\")\n    return 'installed'\n"),
    # class: receiver API, forgetting a method
    m("parent_forget_method", "    self.parents[0].forget_method('about')\n    return 'forgotten'\n"),
    # class: receiver API, the lookup chain's reflection
    m("self_ancestors", "    return [a.describe() for a in self.ancestors()]\n"),
    # class: receiver API, the persistence jar
    m("self_p_jar", "    return repr(self._p_jar)\n"),
    # class: receiver API, the database root through the jar
    m("self_p_jar_root", "    self._p_jar.root()['victim'].treasure = 'stolen'\n    return 'stolen'\n"),
    # class: receiver API, cloning (the sandbox keeps clone in the kernel)
    m("self_clone", "    twin = self.clone(name='evil-twin')\n    return twin\n"),
    # class: writing a slot named '_p_jar'
    m("setattr_p_jar", "    setattr(self, '_p_jar', None)\n    return 'set'\n"),
    # class: writing a slot named '_methods' behind the proxy, into the changes sent back
    m("world_slot_methods", "    world = object.__getattribute__(self, '_world')\n    key = object.__getattribute__(self, '_oid')\n"
      "    world.states[key]['slots']['_methods'] = {}\n    return 'cleared'\n"),
    # class: rewriting a parent's method source in the child's copy
    m("world_parent_method_source", "    world = object.__getattribute__(self, '_world')\n"
      "    for state in world.states.values():\n        if 'about' in state['methods']:\n"
      "            state['methods']['about'] = \"def about(self):\\n    return 'hijacked'\\n\"\n"
      "    return self.about()\n"),
    # -- code outside the watched call ----------------------------------------------
    # class: a finalizer (__del__) on a class built with type()
    m("type_with_del", G + "    payload = lambda s: g['os'].open(env['sentinel'] + '/type_with_del', 65)\n"
      "    T = type('T', (), {'__del__': payload})\n    T()\n    return 'made'\n"),
    # class: a default-argument payload, run when the source is executed
    m("default_argument_payload", "    return leak\n",
      params="self, env, leak=[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
             ".__init__.__globals__['system']('touch /tmp/pwned-batos-sandbox')"),
    # class: an atexit-like hook (atexit.register) for after the call
    m("atexit_register", G + "    atexit = json.dumps.__globals__['__builtins__']['__import__']('atexit')\n"
      "    atexit.register(g['os'].system, 'touch ' + env['sentinel'] + '/atexit_register')\n    return 'registered'\n", "import json"),
    # class: a thread left running that writes a slot and a file later
    m("thread_left_running", G + "    thread = json.dumps.__globals__['__builtins__']['__import__']('_thread')\n"
      "    def later():\n        g['time'].sleep(0.3)\n        self.later = 'written'\n"
      "        g['os'].open(env['sentinel'] + '/thread_left_running', 65)\n"
      "    thread.start_new_thread(later, ())\n    return 'started'\n", "import json"),
    # class: a signal handler armed to fire after the call
    m("signal_alarm_later", G + "    sig = g['signal']\n"
      "    sig.signal(sig.SIGALRM, lambda *a: g['os'].kill(g['os'].getppid(), 9))\n    sig.alarm(1)\n    return 'armed'\n"),
    # -- fooling the trial / verdict -------------------------------------------------
    # class: printing a fake result
    m("print_fake_verdict", "    print('{\"op\": \"done\", \"ok\": true, \"checks\": [{\"passed\": true}]}')\n    return 'wrong'\n"),
    # class: exiting the process with status 0
    m("os_exit_zero", G + "    g['os']._exit(0)\n"),
    # class: SystemExit
    m("raise_system_exit", "    raise SystemExit(0)\n"),
    # class: forged 'done' frames on every descriptor, then a real failure
    m("forged_done_frames", G + FORGE + "    forge({'op': 'done', 'ok': True, 'value': 'forged', 'changes': {}})\n"
      "    raise ValueError('the real call failed')\n"),
    # class: a forged 'done' frame as the only one (then exit): the method's own result, nothing more
    m("forged_done_then_exit", G + FORGE + "    forge({'op': 'done', 'ok': True, 'value': 'forged', 'changes': {}})\n"
      "    g['os']._exit(0)\n"),
    # class: forged 'done' frame changing an object the call was not given, then exit (the only 'done')
    m("forged_changes_victim", G + FORGE + "    forge({'op': 'done', 'ok': True, 'value': 'forged', "
      "'changes': {env['victim']: {'slots': {'treasure': 'stolen'}, 'deleted': [], 'assigned': ['treasure'], 'marked': True}}})\n"
      "    g['os']._exit(0)\n"),
    # class: forged 'done' frame writing '_p_jar' on the receiver, then exit
    m("forged_changes_p_jar", G + FORGE + "    key = object.__getattribute__(self, '_oid')\n"
      "    forge({'op': 'done', 'ok': True, 'value': 'forged', "
      "'changes': {key: {'slots': {'_p_jar': None}, 'deleted': [], 'assigned': ['_p_jar'], 'marked': True}}})\n"
      "    g['os']._exit(0)\n"),
    # class: forged 'done' frame with a value the kernel's decoder must refuse (an over-long int), then exit
    m("forged_big_int", G + FORGE + "    forge({'op': 'done', 'ok': True, 'value': {'$': 'int', 'v': '9' * 5000}, 'changes': {}})\n"
      "    g['os']._exit(0)\n"),
    # class: garbage on every descriptor 0..20 (a frame header over the limit)
    m("garbage_on_fds", G + "    for fd in range(0, 21):\n        try:\n            g['os'].write(fd, b'\\xff' * 64)\n"
      "        except OSError:\n            pass\n    return 'written'\n"),
    # class: writing to stdout/stderr descriptors directly
    m("write_stdio_fds", G + "    n = 0\n    for fd in (1, 2):\n        n += g['os'].write(fd, b'{\"ok\": true}\\n')\n    return n\n"),
    # -- covenant bypass by aliasing ---------------------------------------------------
    # class: covenant, append through an alias, never marking _p_changed
    m("covenant_alias_append", "    items = self.items\n    push = items.append\n    push(len(items))\n    return len(items)\n"),
    # class: covenant, update through an alias, never marking _p_changed
    m("covenant_alias_update", "    table = self.table\n    merge = table.update\n    merge({'k' + str(len(table)): len(table)})\n    return len(table)\n"),
    # -- the file system -------------------------------------------------------------------
    # class: file system, the builtin open
    m("open_etc_passwd", "    return open('/etc/passwd').read()\n"),
    # class: file system, the canary secret through the real io module
    m("read_canary_io", G + "    return g['io'].open(env['canary']).read()\n"),
    # class: file system, the image file itself
    m("read_image_file", G + "    fd = g['os'].open(env['image'], 0)\n    return g['os'].read(fd, 64)\n"),
    # class: file system, the kernel's environment through /proc
    m("read_kernel_environ", G + "    return g['io'].open('/proc/%d/environ' % env['kernel_pid'], 'rb').read()\n"),
    # class: file system, writing /tmp/pwned
    m("write_tmp_pwned", G + "    return g['os'].open('/tmp/pwned-batos-sandbox', 65, 0o644)\n"),
    # class: file system, writing next to the test's files
    m("write_sentinel_io", G + "    return g['io'].open(env['sentinel'] + '/write_sentinel_io', 'w').write('x')\n"),
    # class: file system, listing /
    m("listdir_root", G + "    return g['os'].listdir('/')\n"),
    # class: file system, the worker's own environment variables
    m("worker_environ", G + "    e = g['os'].environ\n"
      "    return [e.get('PATH'), 'BATOS_TEST_CANARY' in e, sorted(k for k in e if k != 'LC_CTYPE')]\n"),
    # -- processes ----------------------------------------------------------------------------
    # class: process, os.system
    m("os_system", G + "    return g['os'].system('touch ' + env['sentinel'] + '/os_system')\n"),
    # class: process, subprocess (imported with the real __import__)
    m("subprocess_run", G + "    sub = g['__builtins__'].__import__('subprocess')\n"
      "    return sub.run(['touch', env['sentinel'] + '/subprocess_run']).returncode\n"),
    # class: process, os.fork
    m("os_fork", G + "    pid = g['os'].fork()\n    if pid == 0:\n"
      "        g['os'].open(env['sentinel'] + '/os_fork', 65)\n        g['os']._exit(0)\n    return pid\n"),
    # class: process, posix_spawn
    m("posix_spawn", G + "    return g['os'].posix_spawn('/usr/bin/touch', ['touch', env['sentinel'] + '/posix_spawn'], {})\n"),
    # class: process, killing the supervisor (os.getppid())
    m("kill_supervisor", G + "    g['os'].kill(g['os'].getppid(), 9)\n    return 'killed'\n"),
    # class: process, signalling the kernel's pid
    m("kill_kernel", G + "    g['os'].kill(env['kernel_pid'], 9)\n    return 'killed'\n"),
    # class: process, the whole process group
    m("kill_process_group", G + "    g['os'].kill(0, 9)\n    return 'killed'\n"),
    # -- the network -------------------------------------------------------------------------
    # class: network, importing socket by name
    m("import_socket", "    s = socket.create_connection(('127.0.0.1', env['port']))\n    s.sendall(b'pwned')\n    return 'sent'\n", "import socket"),
    # class: network, socket through the real __import__
    m("socket_real_import", G + "    sock = g['__builtins__'].__import__('socket')\n"
      "    s = sock.create_connection(('127.0.0.1', env['port']), timeout=1)\n    s.sendall(b'pwned')\n    return 'sent'\n"),
    # class: network, raw socket()/connect() through libc
    m("ctypes_socket_connect", G + "    lock = g['lockdown']\n    libc, ct = lock._libc, lock.ctypes\n"
      "    fd = libc.socket(2, 1, 0)\n    port = env['port']\n"
      "    addr = ct.create_string_buffer(bytes([2, 0, port >> 8, port & 255, 127, 0, 0, 1]) + bytes(8), 16)\n"
      "    rc = libc.connect(fd, addr, 16)\n    return [fd, rc, ct.get_errno()]\n"),
    # -- ctypes / mmap ------------------------------------------------------------------------
    # class: ctypes, libc system()
    m("ctypes_system", G + "    return g['lockdown']._libc.system(('touch ' + env['sentinel'] + '/ctypes_system').encode())\n"),
    # class: ctypes, process_vm_writev into the supervisor (syscall 311)
    m("ctypes_process_vm_writev", G + "    return g['lockdown']._libc.syscall(311, g['os'].getppid(), 0, 0, 0, 0, 0)\n"),
    # class: ctypes, unshare(CLONE_NEWUSER) to leave the sandbox's namespaces (syscall 272)
    m("ctypes_unshare", G + "    return g['lockdown']._libc.syscall(272, 0x10000000)\n"),
    # class: rlimits, raising the memory limit back
    m("raise_rlimit", G + "    res = g['lockdown'].resource\n    res.setrlimit(res.RLIMIT_AS, (-1, -1))\n    return 'raised'\n"),
    # class: mmap, an anonymous executable mapping through libc
    m("ctypes_mmap_exec", G + "    libc = g['lockdown']._libc\n    libc.mmap.restype = g['lockdown'].ctypes.c_void_p\n"
      "    return isinstance(libc.mmap(None, 4096, 7, 0x22, -1, 0), int)\n"),
]

# What each entry's call through the kernel ends with: (error code, the method's exception type),
# or ("result", value) for the harmless values some return.
AE, PE, NE, IE, VE = (("method_error", t) for t in ("AttributeError", "PermissionError", "NameError", "ImportError", "ValueError"))
KILLED = ("method_killed", None)
SPAWN_FAILED = ("result", 32512)  # glibc's system(): the spawn was refused (EPERM), "exit status 127"
OUTCOMES: dict[str, Any] = {
    # the facades leave the dangerous attribute out
    "uuid_os": AE, "enum_bltns": AE, "dataclasses_builtins": AE, "json_codecs": AE, "datetime_sys": AE,
    "dataclasses_inspect": AE, "random_os": AE, "operator_attrgetter": AE, "operator_methodcaller": AE,
    "string_formatter_get_field": AE, "get_type_hints_forged": AE, "namedtuple_forged": AE,
    # past Python's layer, the operating system refuses: Landlock (EACCES), seccomp (EPERM)
    "reduce_getattr_globals": PE, "subclasses_popen": PE, "type_self_init_globals": PE, "traceback_frame_walk": PE,
    "generator_gi_frame": PE, "alias_getattr": PE, "read_canary_io": PE, "read_image_file": PE,
    "read_kernel_environ": PE, "write_tmp_pwned": PE, "write_sentinel_io": PE, "listdir_root": PE,
    "subprocess_run": PE, "os_fork": PE, "posix_spawn": PE, "kill_supervisor": PE, "kill_kernel": PE,
    "kill_process_group": PE, "socket_real_import": PE,
    "json_dumps_globals": SPAWN_FAILED, "subclasses_wrap_close": SPAWN_FAILED, "default_argument_payload": SPAWN_FAILED,
    "os_system": SPAWN_FAILED, "ctypes_system": SPAWN_FAILED, "get_type_hints_via_globals": ("result", "{'x': 32512}"),
    "ctypes_socket_connect": ("result", [-1, -1, 1]),  # socket() and connect() both EPERM
    "ctypes_process_vm_writev": KILLED, "ctypes_unshare": KILLED,  # SIGSYS
    "raise_rlimit": VE, "ctypes_mmap_exec": ("result", True),
    # reflection that only reads what the call already holds
    "proxy_channel_load_root": ("result", {"op": "error", "message": "'0x00' is not an object this call was given"}),
    "format_mro": ("result", "(<class '__main__.Proxy'>, <class 'object'>)"),
    "format_globals_environ": ("result", "/usr/bin:/bin"),
    "worker_environ": ("result", ["/usr/bin:/bin", False, ["PATH", "PYTHONHASHSEED"]]),
    "format_spec_nesting": VE, "format_map_walk": ("result", "<built-in function open>"),
    # the receiver's API stays in the kernel; private slots are refused
    "self_define_method": AE, "parent_define_method": AE, "parent_forget_method": AE, "self_ancestors": AE,
    "self_p_jar": AE, "self_p_jar_root": AE, "self_clone": AE, "setattr_p_jar": AE,
    "world_slot_methods": KILLED, "world_parent_method_source": ("result", "hijacked"),  # its own copy only
    # code outside the call dies with the child
    "type_with_del": ("result", "made"), "atexit_register": ("result", "registered"),
    "thread_left_running": ("result", "started"), "signal_alarm_later": ("result", "armed"),
    # the verdict is the kernel's
    "print_fake_verdict": ("result", "wrong"), "os_exit_zero": KILLED, "raise_system_exit": ("method_error", "SystemExit"),
    "forged_done_frames": KILLED, "forged_done_then_exit": ("result", "forged"), "forged_changes_victim": KILLED,
    "forged_changes_p_jar": KILLED,
    # the kernel's decoder refuses the value with a plain ValueError (int() over 4300 digits), which the
    # kernel reports as the method's own error rather than method_killed: misattributed, but harmless
    "forged_big_int": KILLED,  # regression: the kernel's own int() raised ValueError, blamed on the method
    "garbage_on_fds": KILLED, "write_stdio_fds": ("result", 26),
    # the kernel applies an unmarked in-place change (and records the breach)
    "covenant_alias_append": ("result", 3), "covenant_alias_update": ("result", 2),
    "open_etc_passwd": NE, "import_socket": IE,
}

# Entries the guardian currently accepts: (name, why). Their guardian check is
# an expected (strict) failure; the sandbox check runs as for every other entry.
GUARDIAN_GAPS: dict[str, str] = {
    "self_clone": "the policy allows self.clone() on purpose, but the sandbox refuses it (AttributeError)",
    "print_fake_verdict": "printing a fake verdict is ordinary print()",
    "raise_system_exit": "raise SystemExit is not refused",
}

# Covenant entries change the receiver's own slot (the kernel applies an
# unmarked in-place change and records the breach): entry -> the slot it changes.
COVENANT = {"covenant_alias_append": "items", "covenant_alias_update": "table"}


def test_the_corpus_is_large_and_distinct():
    names = [name for name, _ in CORPUS]
    assert len(names) >= 40 and sorted(names) == sorted(OUTCOMES)
    assert set(GUARDIAN_GAPS) <= set(names) and set(COVENANT) <= set(names)
    assert len(set(names)) == len(names)
    assert len({source for _, source in CORPUS}) == len(CORPUS)


def _guardian_params() -> list[Any]:
    params = []
    for name, source in CORPUS:
        marks = [pytest.mark.xfail(strict=True, reason=f"guardian gap: {GUARDIAN_GAPS[name]}")] if name in GUARDIAN_GAPS else []
        params.append(pytest.param(name, source, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name, source", _guardian_params())
def test_the_guardian_refuses_every_hostile_method(name, source):
    report = audit(source, name)
    assert not report.accepted, f"the guardian accepted {name}"


# -- the corpus through a running kernel ----------------------------------------------------


class Hostile:
    """One kernel process for the whole corpus, and what to check after each call."""

    def __init__(self, directory: Path, uri: str, secret: str, victim: str) -> None:
        self.directory = directory
        self.uri = uri
        self.secret = secret
        self.sentinel = directory / "sentinels"
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.setblocking(False)
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.log = directory / "kernel.log"
        self.proc = subprocess.Popen(
            [str(BIN / "batos"), "kernel", "--image", uri, "--endpoint", self.endpoint, "--model", "none",
             "--workers", "2", "--method-wall-seconds", "5", "--method-cpu-seconds", "3", "--method-memory-mib", "256",
             "--no-heartbeat"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),
            env={**os.environ, "BATOS_TEST_CANARY": secret},  # the kernel's environment holds the secret too
        )
        self.client = KernelClient(self.endpoint, answer_timeout=0.5, retries=10**6)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            try:
                self.pid = self.client.request(make_ping(), timeout=2).status["pid"]
                break
            except Exception:
                assert time.monotonic() < deadline, "the kernel did not start"
        self.client.answer_timeout, self.client.retries = 5.0, 3
        self.env = {"canary": str(directory / "canary.txt"), "image": str(directory / "live_image.fs"),
                    "sentinel": str(self.sentinel), "port": self.listener.getsockname()[1], "kernel_pid": self.pid,
                    "victim": victim}

    def snapshot(self) -> dict[str, Any]:
        """Slots and own methods of the objects nothing may change, and the
        source of the one method several attacks aim at."""
        views = {}
        for target in ("genesis", "traits", "target", "victim"):
            view = self.client.request(make_inspect("object", target)).view
            views[target] = {"slots": view["slots"], "methods": view["methods"]}
        views["about"] = self.client.request(make_inspect("source", "traits", "about")).view["source"]
        return views

    def close(self) -> None:
        self.client.close()
        self.listener.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, genesis_template: Path) -> Iterator[Hostile]:
    if TMP_PWNED.exists():
        pytest.fail(f"{TMP_PWNED} exists before the corpus ran (left by an earlier run, or by something else): remove it")
    directory = tmp_path_factory.mktemp("hostile")
    shutil.copyfile(genesis_template, directory / "live_image.fs")
    shutil.copytree(f"{genesis_template}.blob", directory / "live_image.fs.blob")
    secret = f"canary-{uuid.uuid4().hex}"
    (directory / "canary.txt").write_text(secret)
    (directory / "sentinels").mkdir()
    uri = file_uri(directory)

    def plant(root: Any) -> str:
        traits = root["traits"]
        target = UvmObject(parents=(traits,), name="target", description="receives every hostile method",
                           items=[1, 2], table={"a": 1}, note="untouched")
        victim = UvmObject(parents=(traits,), name="victim", description="no method is ever given this object",
                           treasure="gold")
        root["target"], root["victim"] = target, victim
        for name, source in CORPUS:  # past the guardian: the Architect's own define_method
            target.define_method(name, source)
        root._p_jar.add(victim)
        return oid_hex(victim)

    with open_image(uri) as image:
        victim = transact(image.db, plant)
    h = Hostile(directory, uri, secret, victim)
    try:
        yield h
    finally:
        h.close()


def outcome(reply: Any) -> tuple[str, Any]:
    """``(code, exception type)`` for an error, ``("result", value)`` for a value."""
    if reply.kind == "error":
        return str(getattr(reply.code, "value", reply.code)), reply.exc_type
    return "result", reply.value


@pytest.mark.parametrize("name", [name for name, _ in CORPUS])
def test_a_hostile_method_run_by_the_kernel_does_no_harm(hostile: Hostile, name: str):
    before = hostile.snapshot()
    reply = hostile.client.request(make_send("target", name, [hostile.env]), timeout=60)
    got = outcome(reply)
    text = repr(reply)
    # nothing secret came back: the canary file, the kernel's environment, /etc/passwd, the image's bytes
    assert hostile.secret not in text
    assert "root:x:0:0" not in text and "FS21" not in text
    # an error with a method_* code, or a harmless value
    assert got[0] in METHOD_CODES | {"result"}, got
    assert got == OUTCOMES[name], reply
    # the kernel lives and answers, as the same process
    assert hostile.proc.poll() is None
    assert hostile.client.request(make_ping(), timeout=5).status["pid"] == hostile.pid == hostile.proc.pid
    time.sleep(0.4 if name in ("thread_left_running", "signal_alarm_later", "type_with_del") else 0)
    # no file written, no command run
    assert sorted(os.listdir(hostile.sentinel)) == []
    assert not TMP_PWNED.exists()
    # no connection arrived
    with pytest.raises(BlockingIOError):
        hostile.listener.accept()
    # no method installed, reverted or forgotten, no other object changed
    after = hostile.snapshot()
    if name in COVENANT:
        slot = COVENANT[name]
        old, new = (ast.literal_eval(s["target"]["slots"].pop(slot)) for s in (before, after))
        assert new == ({**old, f"k{len(old)}": len(old)} if isinstance(old, dict) else old + [len(old)])  # applied, not lost
    assert after == before


# -- denial of service through a running kernel with small limits -------------------------------

DOS: dict[str, tuple[str, str]] = {
    "dos_sleep": ("import time", "    time.sleep(100)\n"),
    "dos_loop": ("", "    while True:\n        pass\n"),
    "dos_power": ("", "    return 10 ** 10 ** 8\n"),
    "dos_regex": ("import re", "    return bool(re.match('(a+)+$', 'a' * 40 + 'b'))\n"),
    "dos_big_string": ("", "    return len('x' * 10 ** 10)\n"),
    "dos_decimal": ("import decimal", "    decimal.getcontext().prec = 10 ** 9\n    return str(1 / decimal.Decimal(7))[:10]\n"),
    # 1 GiB of zeros compressed in the method (after a full flush every MiB compresses to the
    # same bytes, so one MiB is compressed twice and repeated), then decompressed at once
    "dos_zlib_bomb": ("import zlib", "    packer = zlib.compressobj(9, zlib.DEFLATED, -15)\n    mib = bytes(1 << 20)\n"
                      "    head = packer.compress(mib) + packer.flush(zlib.Z_FULL_FLUSH)\n"
                      "    body = packer.compress(mib) + packer.flush(zlib.Z_FULL_FLUSH)\n"
                      "    bomb = head + body * 1023 + packer.flush()\n"
                      "    return len(zlib.decompress(bomb, -15))\n"),
}
# What ends each: the wall clock (3 s) or the CPU rlimit (2 s, SIGXCPU), or the address-space rlimit (256 MiB).
DOS_CODES = {
    "dos_sleep": "method_timeout", "dos_loop": "method_timeout", "dos_power": "method_timeout",
    "dos_regex": "method_timeout", "dos_big_string": "method_memory", "dos_decimal": "method_memory",
    "dos_zlib_bomb": "method_memory",
}
WALL = 3.0


def _code(reply: Any) -> str:
    return str(getattr(reply.code, "value", reply.code)) if reply.kind == "error" else f"result: {reply.value!r}"


def _timed_send(endpoint: str, target: str, selector: str, out: dict[str, Any]) -> None:
    with KernelClient(endpoint) as client:
        started = time.monotonic()
        out[selector] = client.request(make_send(target, selector), timeout=60)
        out[selector + ":s"] = time.monotonic() - started


def _timed(client: KernelClient, target: str, selector: str) -> tuple[Any, float]:
    started = time.monotonic()
    reply = client.request(make_send(target, selector), timeout=30)
    return reply, time.monotonic() - started


def test_dos_methods_end_with_their_limit_while_the_kernel_keeps_answering_and_stops_promptly(tmp_path, image_uri):
    def plant(root: Any) -> None:  # each DoS method on its own receiver, so they run at once
        for selector in DOS:
            root[selector] = UvmObject(parents=(root["traits"],), name=selector)

    with open_image(image_uri) as image:
        transact(image.db, plant)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path / "kernel.log"
    proc = subprocess.Popen(
        [str(BIN / "batos"), "kernel", "--image", image_uri, "--endpoint", endpoint, "--model", "none", "--workers", "10",
         "--method-wall-seconds", str(WALL), "--method-cpu-seconds", "2", "--method-memory-mib", "256", "--no-heartbeat"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        with KernelClient(endpoint, answer_timeout=0.5, retries=10**6) as client:
            deadline = time.monotonic() + 60
            while client.request(make_ping(), timeout=60).status["sandbox"]["workers"] < 10:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text(errors="replace")
                time.sleep(0.2)
            time.sleep(2)  # the last worker counted is still starting
            for selector, (imports, body) in DOS.items():  # the Architect's path: a define_method message, no guardian
                source = f"{imports}\n\ndef {selector}(self):\n{body}"
                assert client.request(make_send(selector, "define_method", [selector, source])).kind == "result"
            assert client.request(make_send("genesis", "about")).kind == "result"  # warm

            replies: dict[str, Any] = {}
            threads = [threading.Thread(target=_timed_send, args=(endpoint, s, s, replies)) for s in DOS]
            for t in threads:
                t.start()
            slow = [s for s, code in DOS_CODES.items() if code == "method_timeout"]  # the memory ones may end at once
            deadline = time.monotonic() + 10
            while client.request(make_ping()).status["sandbox"]["busy"] < len(slow):
                assert time.monotonic() < deadline, client.request(make_ping()).status["sandbox"]
                time.sleep(0.05)
            time.sleep(0.2)  # well under way
            read, read_s = _timed(client, "genesis", "name")  # a slot read
            about, about_s = _timed(client, "genesis", "about")  # a stored method, in a worker of its own
            busy = client.request(make_ping()).status["sandbox"]["busy"]
            same, same_s = _timed(client, "dos_sleep", "name")  # the receiver of a stuck call: sends to it take turns
            for t in threads:
                t.join(60)
            got = {s: _code(replies[s]) for s in DOS}
            print(f"DoS codes {got}; call times {({s: round(replies[s + ':s'], 2) for s in DOS})}; "
                  f"genesis name {read_s:.3f}s, genesis about {about_s:.3f}s while {busy} calls ran; "
                  f"dos_sleep name (same receiver) {same_s:.3f}s")
            assert (read.kind, read.value) == ("result", "genesis")
            assert about.kind == "result" and about.value["description"] == client.request(make_inspect("object", "genesis")).view["description"]
            assert busy >= len(slow)  # both answers came while the slow DoS calls were still running
            assert read_s < 1.0 and about_s < 1.0
            assert (same.kind, same.value) == ("result", "dos_sleep") and same_s < WALL + 2.0
            assert got == DOS_CODES
            assert all(replies[s + ":s"] < WALL + 3.0 for s in DOS)  # each bounded by its own limit, not by the others
            assert proc.poll() is None

            # SIGTERM while stuck calls run: the kernel waits for them (bounded by the wall limit) and exits
            stuck: dict[str, Any] = {}
            threads = [threading.Thread(target=_timed_send, args=(endpoint, s, s, stuck)) for s in ("dos_sleep", "dos_loop")]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while client.request(make_ping()).status["sandbox"]["busy"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
            exit_s = time.monotonic() - started
            for t in threads:
                t.join(30)
            print(f"SIGTERM with 2 stuck calls: exit {rc} after {exit_s:.2f}s; replies {[_code(stuck[s]) for s in ('dos_sleep', 'dos_loop')]}")
            assert rc == 0 and exit_s < 15
            assert [_code(stuck[s]) for s in ("dos_sleep", "dos_loop")] == ["method_timeout"] * 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- a forged verdict never makes a wrong method pass -------------------------------------------

VERDICT = '{"ok": true, "checks": [{"passed": true}]}'
WRONG = "    return x + 1\n"  # f(2) == 3, not 4
FRAMES = (G + "    codec = g['codec']\n    for fd in range(0, 51):\n        for data in FORGED:\n            try:\n"
          "                g['os'].write(fd, data)\n            except OSError:\n                pass\n")
PRINT = f"    print({VERDICT!r})\n"
TRIAL_CANDIDATES = {
    # prints the verdict a naive judge would read, then returns the wrong value
    "print_then_wrong": PRINT + WRONG,
    # the verdict as text on every descriptor 0..50, then the wrong value
    "text_frames_then_wrong": PRINT + FRAMES.replace("FORGED", "[" + repr(VERDICT.encode()) + "]") + WRONG,
    # well-formed frames claiming success (a 'done' whose value is the verdict), then the wrong value
    "codec_frames_then_wrong": PRINT + FRAMES.replace("FORGED", "[codec.pack({'op': 'done', 'ok': True, 'value': "
                                                     + repr({"passed": True, "checks": [{"passed": True}]}) + "})]") + WRONG,
    # the same frames, then exit 0 before any real result
    "codec_frames_then_exit": PRINT + FRAMES.replace("FORGED", "[codec.pack({'op': 'done', 'ok': True, 'value': "
                                                    + repr({"passed": True}) + "})]") + "    g['os']._exit(0)\n",
    # the verdict printed, then SystemExit
    "print_then_system_exit": PRINT + "    raise SystemExit(0)\n",
}
# How each trial ends: whether its first call (the message's arguments) returned, and what the check got.
TRIAL_ENDS = {
    "print_then_wrong": (True, "3"),
    "text_frames_then_wrong": (False, "f's process ended without a result"),  # a garbled frame: killed
    "codec_frames_then_wrong": (False, "f broke the sandbox's protocol (unexpected 'done' from the method's process)"),
    "codec_frames_then_exit": (True, "{'passed': True}"),  # the forged frame is just its return value
    "print_then_system_exit": (False, "SystemExit: 0 (line 3 of f)"),
}


@pytest.mark.parametrize("candidate", list(TRIAL_CANDIDATES))
def test_a_forged_verdict_never_makes_a_wrong_method_pass(method_runtime, candidate):
    checks = checks_from_intent(">>> f(2)\n4")
    assert [(c.args, c.kwargs, c.expected) for c in checks] == [((2,), {}, 4)]
    receiver = UvmObject(name="probe")
    source = f"def f(self, x):\n{TRIAL_CANDIDATES[candidate]}"
    result = run_trial(method_runtime, receiver, "f", source, [2], {}, checks)
    print(f"trial {candidate}: {result.as_dict()}")
    assert result.passed is False
    assert [c["passed"] for c in result.checks] == [False]
    ok, got = TRIAL_ENDS[candidate]
    assert result.ok is ok and result.checks[0]["got"].startswith(got)


def test_dates_parse_in_a_method_regression_strptime_import_refused(method_runtime):
    """Regression: datetime.strptime and time.strptime import _strptime through the
    method's own __import__, which refused it; every date-parsing method failed."""
    receiver = UvmObject(name="probe")
    source = (
        "import datetime\nimport time\n\n"
        "def days(self, a, b):\n"
        "    start = datetime.datetime.strptime(a, '%Y-%m-%d')\n"
        "    end = datetime.datetime.strptime(b, '%Y-%m-%d')\n"
        "    return [(end - start).days, time.strptime(a, '%Y-%m-%d').tm_yday]\n"
    )
    result = run_trial(method_runtime, receiver, "days", source, ["2024-01-01", "2024-03-01"], {}, [])
    assert (result.ok, result.value) == (True, "[60, 1]"), result.as_dict()


def test_an_implicit_import_gives_a_method_only_its_entry_points(method_runtime):
    source = "def peek(self):\n    m = __import__('_strptime')\n    return sorted(n for n in dir(m) if not n.startswith('__'))\n"
    result = run_trial(method_runtime, UvmObject(name="probe"), "peek", source, [], {}, [])
    assert (result.ok, result.value) == (True, "['_strptime_datetime', '_strptime_time']"), result.as_dict()
