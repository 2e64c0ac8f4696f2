"""The persona roster: the one place that says who the personas are.

It sits in the core because every layer speaks of personas (the codex
validates against it, genesis incarnates it, the substrate binds models to
it, the cycle pins it) and none of them may import another to learn it.
"""

from __future__ import annotations

from typing import Literal

# persona name -> the root object that is its prototype in the image
PERSONA_ROOTS: dict[str, str] = {"ALFRED": "alfred", "BRICK": "brick", "ROBIN": "robin", "BABS": "babs"}
PERSONAS: tuple[str, ...] = tuple(PERSONA_ROOTS)
PersonaName = Literal["ALFRED", "BRICK", "ROBIN", "BABS"]
