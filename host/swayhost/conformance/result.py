"""What a conformance run produces: one outcome per check, and the report.

A check either passes (with a short note of what it saw), fails (with every
problem it found, not just the first, so one run tells a worker's author
all there is to fix), or is skipped (with the reason, e.g. a capability the
worker does not advertise). The JSON form is what scripts and tests read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]


class CheckFailed(Exception):
    """Raised by a check that found a contract violation; the message says which."""


class CheckSkipped(Exception):
    """Raised by a check that does not apply to this worker; the message says why."""


class Problems:
    """Collects a check's findings so it can report all of them at once."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def add(self, problem: str) -> None:
        self._items.append(problem)

    def expect(self, condition: bool, problem: str) -> bool:
        """Record ``problem`` unless ``condition`` holds; return ``condition``."""
        if not condition:
            self.add(problem)
        return condition

    def extend(self, problems: list[str], prefix: str = "") -> None:
        self._items.extend(f"{prefix}{p}" for p in problems)

    @property
    def messages(self) -> list[str]:
        return list(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise CheckFailed("; ".join(self._items))


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    title: str
    status: Status
    detail: str
    seconds: float
    section: str = ""
    """Where the worker-author guide states the rule, e.g. ``docs/writing-a-worker.md#6-errors``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "section": self.section,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class Report:
    """The outcome of one conformance run against one worker command."""

    worker: list[str]
    worker_kind: str = ""
    transport: str = ""
    """How the scoring checks reached the worker: ``frames`` (the local framed path) or ``grpc``."""
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "worker": self.worker,
            "worker_kind": self.worker_kind,
            "transport": self.transport,
            "summary": {s: self.count(s) for s in ("pass", "fail", "skip")},
            "checks": [r.to_json() for r in self.results],
        }
