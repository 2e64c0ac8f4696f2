"""Restart policy, in the OTP manner: back-off between restarts, and an
intensity limit (at most N restarts in a window) that turns a crash loop into
a clear stop instead of spinning forever. Pure: the supervisor feeds it clock
readings, tests feed it numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    max_restarts: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    _recent: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> bool:
        """Count a restart at *now*; False means the intensity limit is exceeded."""
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
        return len(self._recent) <= self.max_restarts

    def backoff(self) -> float:
        """Exponential in the number of recent restarts, capped."""
        n = max(len(self._recent) - 1, 0)
        return min(self.backoff_max_s, self.backoff_initial_s * 2**n)

    def reset(self) -> None:
        self._recent.clear()
