"""Allopoietic upgrades: ``update_instructions.json``, validated, applied, undone.

The file is validated against a closed schema before anything happens: only
``pip_install`` (requirement specifiers, or local wheel/sdist paths inside the
allowed roots), ``git_pull`` (fast-forward only), ``migrate_image`` and
``set_config`` (known keys) exist. Everything else — unknown steps, shell
commands, pip options, URLs, paths elsewhere — is rejected with its reason
and nothing is touched.

Each step records how to undo itself before it runs, so a failed step or an
unhealthy new kernel rolls everything back in reverse order.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .config import CONFIG_KEYS, WatchdogConfig


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipInstall(_Step):
    kind: Literal["pip_install"]
    requirements: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(min_length=1, max_length=20)


class GitPull(_Step):
    kind: Literal["git_pull"]


class MigrateImage(_Step):
    kind: Literal["migrate_image"]


class SetConfig(_Step):
    kind: Literal["set_config"]
    key: str
    value: Any


Step = Annotated[Union[PipInstall, GitPull, MigrateImage, SetConfig], Field(discriminator="kind")]


class Instructions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    steps: list[Step] = Field(min_length=1, max_length=20)


_instructions = TypeAdapter(Instructions)
_WHEEL = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-.+)?\.whl$")
_SDIST = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)\.(tar\.gz|zip)$")


class Rejected(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _package_of(requirement: str, roots: list[Path]) -> str:
    """The distribution a requirement installs; raises ValueError for anything not allowed."""
    if requirement.startswith("-"):
        raise ValueError(f"pip options are not allowed: {requirement!r}")
    if "://" in requirement or requirement.startswith("git+"):
        raise ValueError(f"URLs are not allowed: {requirement!r}")
    if requirement.endswith((".whl", ".tar.gz", ".zip")):
        path = Path(requirement).resolve()
        if not any(path.is_relative_to(root.resolve()) for root in roots):
            raise ValueError(f"{requirement!r} is outside the allowed roots ({', '.join(str(r) for r in roots)})")
        if not path.is_file():
            raise ValueError(f"{requirement!r} does not exist")
        match = _WHEEL.match(path.name) or _SDIST.match(path.name)
        if not match:
            raise ValueError(f"{requirement!r} is not a wheel or sdist file name")
        return match["name"].replace("_", "-").lower()
    try:  # markers are legal ("x; python_version < '3.12'"), shell text after ';' is not
        return Requirement(requirement).name.lower()
    except InvalidRequirement as exc:
        raise ValueError(f"not a requirement specifier: {requirement!r} ({exc})") from None


def validate(raw: bytes, roots: list[Path]) -> Instructions:
    """Parse and check an instruction file; raise Rejected with every reason."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise Rejected([f"not JSON: {exc}"]) from None
    try:
        instructions = _instructions.validate_python(data)
    except ValidationError as exc:
        raise Rejected([f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]) from None
    reasons = []
    for number, step in enumerate(instructions.steps, start=1):
        if isinstance(step, PipInstall):
            for requirement in step.requirements:
                try:
                    _package_of(requirement, roots)
                except ValueError as exc:
                    reasons.append(f"step {number}: {exc}")
        elif isinstance(step, SetConfig):
            if step.key not in CONFIG_KEYS:
                reasons.append(f"step {number}: unknown config key {step.key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
            else:
                try:
                    WatchdogConfig.model_validate({step.key: step.value})
                except ValidationError as exc:
                    reasons.append(f"step {number}: bad value for {step.key}: {exc.errors()[0]['msg']}")
    if reasons:
        raise Rejected(reasons)
    return instructions


@dataclass
class Upgrade:
    """Runs the steps; every step pushes its undo before it acts."""

    config_path: Path
    image_uri: str
    project: Path
    roots: list[Path]
    log: Callable[[str], None] = print
    undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)

    def apply(self, instructions: Instructions) -> None:
        for step in instructions.steps:
            getattr(self, f"_{step.kind}")(step)
            self.done.append(step.kind)

    def rollback(self) -> list[str]:
        """Undo in reverse; returns what could not be undone (empty when all went back)."""
        failures = []
        while self.undo:
            what, action = self.undo.pop()
            try:
                action()
                self.log(f"undone: {what}")
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                failures.append(f"{what}: {exc}")
        return failures

    def _run(self, *command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])}... failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result.stdout

    def _pip_install(self, step: PipInstall) -> None:
        names = [_package_of(r, self.roots) for r in step.requirements]
        before: dict[str, str | None] = {}
        for name in names:
            try:
                before[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                before[name] = None

        def restore() -> None:
            for name, version in before.items():
                if version is None:
                    self._run(sys.executable, "-m", "pip", "uninstall", "-y", name)
                else:
                    self._run(sys.executable, "-m", "pip", "install", "--no-deps", f"{name}=={version}")

        self.undo.append((f"pip install {' '.join(step.requirements)}", restore))
        self._run(sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *step.requirements)

    def _git_pull(self, step: GitPull) -> None:
        head = self._run("git", "-C", str(self.project), "rev-parse", "HEAD").strip()
        self.undo.append((f"git pull (back to {head[:10]})", lambda: self._run("git", "-C", str(self.project), "reset", "--hard", head) and None))
        self._run("git", "-C", str(self.project), "pull", "--ff-only")

    def _migrate_image(self, step: MigrateImage) -> None:
        from batos.schema.migrations import migrate
        from batos.core.image import file_path, normalize_uri, open_image

        path = file_path(normalize_uri(self.image_uri))
        if path is not None:
            backup = path.with_name(path.name + ".pre-upgrade")
            shutil.copyfile(path, backup)

            def restore() -> None:
                shutil.copyfile(backup, path)
                Path(f"{path}.index").unlink(missing_ok=True)  # stale now: rebuilt on open

            self.undo.append((f"migrate_image (restore {backup.name})", restore))
        with open_image(self.image_uri) as image:
            applied = migrate(image)
        self.log(f"migrations applied: {', '.join(applied) or 'none needed'}")

    def _set_config(self, step: SetConfig) -> None:
        old = self.config_path.read_bytes() if self.config_path.exists() else None

        def restore() -> None:
            if old is None:
                self.config_path.unlink(missing_ok=True)
            else:
                self.config_path.write_bytes(old)

        self.undo.append((f"set_config {step.key}", restore))
        config = WatchdogConfig.load(self.config_path)
        config = config.model_copy(update={step.key: WatchdogConfig.model_validate({step.key: step.value}).__getattribute__(step.key)})
        config.save(self.config_path)
