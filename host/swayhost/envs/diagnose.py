"""Turn an installer's failure output into the kind of problem and the fix.

pip and uv word the same failures differently, and pip hides the connection
error behind "from versions: none" unless its verbose log is read, so both
the printed output and pip's ``--log`` file are searched. Network markers
are checked first: an unreachable index also ends in "no matching
distribution".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NETWORK_MARKERS = (
    "Failed to establish a new connection",
    "Connection refused",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No route to host",
    "Max retries exceeded",
    "connection error",
    "Read timed out",
    "Failed to fetch",
    "tcp connect error",
    "dns error",
)
UNRESOLVABLE_MARKERS = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "ResolutionImpossible",
    "conflicting dependencies",
    "No solution found when resolving",
    "requirements are unsatisfiable",
)

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:,.]+ ")
"""How each line of pip's ``--log`` file starts."""
_LABEL = re.compile(r"^[a-z]+:")
"""The start of a line of its own in uv's error chain: ``cause:``, ``error:``, ``hint:``."""


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    """``network``, ``unresolvable`` or ``install``."""
    detail: str
    """The installer's own line that shows it, or its last line."""


def diagnose(output: str, log: str = "") -> Diagnosis:
    """Classify a failed install from its ``output`` (and pip's verbose ``log``)."""
    lines = _unwrapped(output) + _unwrapped(log)
    for reason, markers in (("network", NETWORK_MARKERS), ("unresolvable", UNRESOLVABLE_MARKERS)):
        hits = [line for line in lines if any(m.lower() in line.lower() for m in markers)]
        if hits:
            return Diagnosis(reason, _best(reason, hits)[:300])
    printed = [line.strip() for line in output.splitlines() if line.strip()]
    return Diagnosis("install", printed[-1][:300] if printed else "it printed nothing")


def _unwrapped(text: str) -> list[str]:
    """Non-empty lines without pip's log timestamps, uv's wrapped lines joined back.

    uv wraps its error chain to the terminal width, indenting continuations
    deeper than the ``cause:`` they continue; a marker split over two lines
    would otherwise go unseen.
    """
    lines: list[str] = []
    for raw in text.splitlines():
        raw = _TIMESTAMP.sub("", raw)
        line = raw.strip()
        if not line:
            continue
        continued = raw[:1].isspace() and not _LABEL.match(line)
        if continued and lines:
            lines[-1] += " " + line
        else:
            lines.append(line)
    return lines


def _best(reason: str, hits: list[str]) -> str:
    """The most telling line.

    For the network, the first hit (it names the URL; later ones are its
    causes); for resolution, uv's "Because ..." sentence, else pip's last
    line ("No matching distribution found for ...").
    """
    if reason == "network":
        return hits[0]
    because = [h for h in hits if "Because" in h]
    return (because or hits)[-1]
