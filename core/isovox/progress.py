"""Progress reporting and cancellation shared by the engine, CLI and UIs.

Engine functions take an optional :class:`Task`. A UI passes one built from its
own callbacks (a progress bar, a Cancel button); the engine reports fractions,
splits work into weighted stages and checks for cancellation between chunks.
"""

from __future__ import annotations

from typing import Callable, Optional

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


class Task:
    """A progress sink over the range [start, end] of a parent's 0..1 scale."""

    def __init__(
        self,
        callback: Optional[ProgressCallback] = None,
        cancelled: Optional[CancelCheck] = None,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        self._callback = callback
        self._cancelled = cancelled
        self._start = start
        self._end = end

    def update(self, fraction: float, message: str = "") -> None:
        """Report progress within this task (0..1) and honour a pending cancel."""
        self.check()
        if self._callback is not None:
            value = self._start + (self._end - self._start) * min(max(fraction, 0.0), 1.0)
            self._callback(value, message)

    def check(self) -> None:
        """Raise :class:`CancelledError` if the user asked to stop."""
        if self._cancelled is not None and self._cancelled():
            raise CancelledError("cancelled by the user")

    def sub(self, start: float, end: float) -> "Task":
        """A child task covering [start, end] of this task."""
        span = self._end - self._start
        return Task(self._callback, self._cancelled, self._start + span * start, self._start + span * end)

    def stages(self, weights: list[float]) -> list["Task"]:
        """Split into consecutive child tasks with relative ``weights``."""
        total = float(sum(weights)) or 1.0
        tasks, acc = [], 0.0
        for w in weights:
            tasks.append(self.sub(acc / total, (acc + w) / total))
            acc += w
        return tasks


def ensure_task(task: Optional[Task]) -> Task:
    return task if task is not None else Task()
