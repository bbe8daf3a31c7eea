"""Checks on a caller's arguments, made on the host before anything is encoded.

Protobuf either coerces a wrong type silently (``top_k=1.5`` became 1, a
``bytes`` prompt was accepted) or fails with a message that names no
argument (``bad argument type for built-in operation``, ``Value out of
range``). In process, sway's backends raise ``TypeError`` for a number of
the wrong type, so these checks do too, and every message names the
argument, what it got and what it must be. Ranges that only the backend
knows (``top_k`` against the vocabulary, ``top_p`` in (0, 1]) stay the
worker's to check, in the backend's words.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

INT32_MAX = 2**31 - 1


def text(name: str, value: Any, *, error: type[Exception] = TypeError) -> str:
    """``value`` if it is a ``str``; else ``error`` (``TypeError`` unless sway raises another).

    sway's pydantic ``ModelSpec`` refuses a non-str field with a
    ``ValidationError``, a ``ValueError``: a spec's fields pass ``ValueError``.
    """
    if isinstance(value, str):
        return value
    fix = ": decode it first, e.g. value.decode('utf-8')" if isinstance(value, bytes) else ""
    raise error(f"{name} must be a str, not {described(value)}{fix}")


def integer(name: str, value: Any, *, bits: int = 64) -> int:
    """``value`` as an ``int`` that fits the contract's signed field of ``bits`` bits.

    ``TypeError`` for a non-integer (bool and a float such as 1.5 included, as
    in process); ``ValueError`` naming the range for one the field cannot hold.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, not {described(value)}")
    number = int(value)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {number}")
    return number


def top_k(value: Any) -> int:
    """``top_k`` as an int, capped at the contract's int32 (the worker caps it at the vocabulary).

    In process a ``top_k`` larger than the vocabulary returns the whole
    vocabulary; capping at 2**31-1 gives the same answer over the wire.
    """
    return min(integer("top_k", value), INT32_MAX)


def real(name: str, value: Any) -> float:
    """``value`` as a ``float``; ``TypeError`` for a non-number (str and bool included)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a float, not {described(value)}")
    return float(value)


def finite(name: str, value: Any) -> float:
    """``real(name, value)``, and ``ValueError`` when it is NaN or infinite."""
    number = real(name, value)
    if not math.isfinite(number):
        raise ValueError(
            f"{name} must be finite, got {number!r}: every score of such a view would be NaN"
        )
    return number


def described(value: Any) -> str:
    """``NoneType``, ``float (1.5)``: the type, and a short repr when it helps."""
    kind = type(value).__name__
    if value is None:
        return kind
    shown = repr(value)
    return f"{kind} ({shown[:40]}{'...' if len(shown) > 40 else ''})"
