"""The persona codex: the seed data genesis incarnates the personas from.

``seeds/persona_codex.jsonl`` holds two kinds of lines: ``persona`` lines (one
per persona: identity, mission, method, pillars) and ``memory`` lines
(prompt/response pairs that seed the knowledge catalog). The file is validated
as a whole before genesis touches the image, so a bad seed file changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from batos.core.roster import PERSONAS, PersonaName
from batos.core.errors import BatosError

SEEDS_ENV = "BATOS_SEEDS"

NonEmpty = Annotated[str, Field(min_length=1)]


class CodexError(BatosError):
    """The codex file is missing or not valid."""


class PersonaCodex(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["persona"]
    persona: PersonaName
    root: NonEmpty
    title: NonEmpty
    core_identity: NonEmpty
    mission: NonEmpty
    method: NonEmpty
    pillars: list[NonEmpty] = Field(min_length=1)
    duties: list[NonEmpty] = Field(min_length=1)


class MemorySeed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["memory"]
    id: NonEmpty
    prompt: NonEmpty
    response: NonEmpty


_Line = TypeAdapter(Annotated[Union[PersonaCodex, MemorySeed], Field(discriminator="kind")])


class Codex(BaseModel):
    personas: dict[str, PersonaCodex]
    memories: list[MemorySeed]


def seeds_dir() -> Path:
    """``$BATOS_SEEDS``, else the ``seeds/`` folder of the checkout."""
    env = os.environ.get(SEEDS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "seeds"


def load_codex(path: Path | None = None) -> Codex:
    """Parse and validate a codex file; errors say which line and why."""
    path = path or seeds_dir() / "persona_codex.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodexError(f"persona codex not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise CodexError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    personas: dict[str, PersonaCodex] = {}
    memories: list[MemorySeed] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = _Line.validate_python(json.loads(line))
        except json.JSONDecodeError as exc:
            errors.append(f"Line {number}: not JSON: {exc.msg}")
            continue
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            errors.append(f"Line {number}: {where}: {first['msg']}")
            continue
        if isinstance(entry, PersonaCodex):
            if entry.persona in personas:
                errors.append(f"Line {number}: persona {entry.persona} defined twice")
            personas[entry.persona] = entry
        else:
            memories.append(entry)
    missing = [p for p in PERSONAS if p not in personas]
    if missing and not errors:
        errors.append(f"personas missing: {', '.join(missing)}")
    if errors:
        raise CodexError(f"{path}: " + "; ".join(errors))
    return Codex(personas=personas, memories=memories)
