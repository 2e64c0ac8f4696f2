"""The watchdog's configuration: how to run and judge the kernel.

Kept beside the image in ``watchdog.json`` (written by ``set_config`` upgrade
steps), so an upgrade can change it and a rollback can put it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WatchdogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    health_interval_s: float = Field(2.0, gt=0, le=300)
    health_timeout_s: float = Field(3.0, gt=0, le=300)
    # messages waiting this long with every kernel worker busy: the kernel
    # answers pings but serves nothing (stuck work), so it counts as unhealthy
    stuck_after_s: float = Field(60.0, gt=0, le=3600)
    health_failures: int = Field(2, ge=1, le=100)
    max_restarts: int = Field(5, ge=0, le=1000)
    restart_window_s: float = Field(60.0, gt=0, le=86400)
    start_timeout_s: float = Field(60.0, gt=0, le=3600)
    stop_grace_s: float = Field(10.0, ge=0, le=600)
    kernel_workers: int = Field(4, ge=1, le=64)
    kernel_model: Literal["embedded", "none"] = "embedded"
    kernel_max_attempts: int = Field(3, ge=1, le=10)

    @classmethod
    def load(cls, path: Path) -> "WatchdogConfig":
        if not path.exists():
            return cls()
        return cls.model_validate(json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        tmp.replace(path)


CONFIG_KEYS = frozenset(WatchdogConfig.model_fields)
