"""What each error the kit provokes must carry: status code, reason, exception type, attrs.

The host rebuilds a worker's error as the exception named in
``sway-error-type`` (when it is a builtin or one of dlm-sway's errors, with
the attributes of ``sway-error-attrs``), so sway's own ``except`` clauses
see what an in-process backend raises. A missing or unqualified type, or
attrs that are not a JSON object, silently turn a ``ProbeError`` into a
bare ``ValueError`` without its ``probe``. ``REFUSALS`` is the table the
guide prints (docs/writing-a-worker.md, section 6).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from swayplugin.v1 import backend_pb2 as pb
from swayworker.errors import ATTRS_KEY, GRPC_CODE_OF_REASON, TYPE_KEY

from swayhost.conformance.session import RpcFailure
from swayhost.translate import nameable, named_class

SWAY_ERRORS = "dlm_sway.core.errors."
PROBE_ERROR = f"{SWAY_ERRORS}ProbeError"
ATTRS_OF: dict[str, tuple[str, ...]] = {PROBE_ERROR: ("probe",)}
"""The attributes ``sway-error-attrs`` must hold for a class the host rebuilds by name."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The error a worker must answer one kind of bad request with."""

    reason: int
    exception_type: str
    """The class sway raises for it; a worker's own class the host cannot name also does,
    unless this is one of sway's classes (the host rebuilds those only by their name)."""
    also: tuple[str, ...] = ()
    """Other classes sway raises for it in some backend."""
    example: str = "{}"
    """What ``sway-error-attrs`` looks like for it."""

    @property
    def reason_name(self) -> str:
        return pb.ErrorReason.Name(self.reason)  # type: ignore[arg-type]


BAD_ARGUMENT = Refusal(pb.ERROR_REASON_BAD_ARGUMENT, "builtins.ValueError", also=(PROBE_ERROR,))
"""sway's API backend raises ProbeError where a server refuses (a prompt too long, say)."""
EMPTY_COMPLETION = Refusal(
    pb.ERROR_REASON_BAD_ARGUMENT, PROBE_ERROR, example='{"probe": "logprob_of"}'
)
NOT_LOADED = Refusal(pb.ERROR_REASON_NOT_LOADED, "builtins.RuntimeError")
UNSUPPORTED = Refusal(pb.ERROR_REASON_UNSUPPORTED, "builtins.NotImplementedError")

REFUSALS: tuple[tuple[str, Refusal], ...] = (
    ("a completion that tokenizes to zero tokens (e.g. empty)", EMPTY_COMPLETION),
    (
        "no view, no operation, `top_k` <= 0, `max_new_tokens` <= 0, `rank_scale` <= 0, "
        "a prompt over `max_prompt_tokens`",
        BAD_ARGUMENT,
    ),
    ("a scoring call before `Load`", NOT_LOADED),
    ("a view, operation or `Preflight` not advertised", UNSUPPORTED),
)
"""Each provoked error and what it must carry, in the order the guide lists them."""


def refusal_problems(outcome: object, expected: Refusal, what: str) -> list[str]:
    """``outcome`` must be ``expected``'s status code, reason, exception type and attrs."""
    code = GRPC_CODE_OF_REASON[expected.reason]
    name = expected.reason_name
    if not isinstance(outcome, RpcFailure):
        return [f"{what}: answered OK; expected {code.name} ({name})"]
    if outcome.code != code:
        return [f"{what}: {outcome}; expected {code.name} ({name})"]
    if outcome.reason != name:
        got = repr(outcome.reason) if outcome.reason else "absent"
        return [f"{what}: trailing metadata sway-error-reason is {got}; expected {name}"]
    if not outcome.details:
        return [f"{what}: the status carries no message"]
    return [
        f"{what}: {problem}"
        for problem in error_problems(
            outcome.metadata.get(TYPE_KEY), outcome.metadata.get(ATTRS_KEY), expected
        )
    ]


def item_error_problems(error: pb.Error, expected: Refusal) -> list[str]:
    """The same rules for one failed item of a ScoreBatch (its ``Error`` message)."""
    if error.reason != expected.reason:
        got = pb.ErrorReason.Name(error.reason)
        return [f"error reason {got}, expected {expected.reason_name}"]
    if not error.message:
        return ["the error has no message"]
    return error_problems(error.exception_type, error.attrs_json, expected, item=True)


def error_problems(
    exception_type: str | None, attrs_json: str | None, expected: Refusal, *, item: bool = False
) -> list[str]:
    """What is wrong with an error's exception type and attributes (empty when right)."""
    type_field = "exception_type" if item else TYPE_KEY
    attrs_field = "attrs_json" if item else ATTRS_KEY
    problems = _type_problems(exception_type or "", expected, type_field)
    required = ATTRS_OF.get(exception_type or "", ()) if not problems else ()
    problems.extend(_attrs_problems(attrs_json, required, expected.example, attrs_field))
    return problems


def _type_problems(exception_type: str, expected: Refusal, field: str) -> list[str]:
    want = expected.exception_type
    send = f"send {want!r}"
    if not exception_type:
        return [f"{field} is absent; {send} (the exception sway raises for this)"]
    module, _, name = exception_type.rpartition(".")
    if not module or not name:
        return [f"{field} {exception_type!r} is not a qualified class name; {send}"]
    if exception_type in expected.also:
        return []
    if want.startswith(SWAY_ERRORS):
        if exception_type != want:
            return [
                f"{field} is {exception_type!r}; sway raises {want} for this, and the host "
                f"rebuilds that class only when it is named: {send}"
            ]
        return []
    if not nameable(exception_type):
        return []  # the worker's own class: the host raises its class of the reason
    cls, base = named_class(exception_type), named_class(want)
    assert base is not None, want
    if cls is None:
        return [f"{field} {exception_type!r} names no class the host knows; {send}"]
    if not issubclass(cls, base):
        return [
            f"{field} is {exception_type!r}, so the host raises {cls.__name__} where sway "
            f"expects {base.__name__}; {send}"
        ]
    return []


def _attrs_problems(
    attrs_json: str | None, required: tuple[str, ...], example: str, field: str
) -> list[str]:
    if not attrs_json:
        return [f"{field} is absent; send a JSON object: {example}"]
    try:
        attrs = json.loads(attrs_json)
    except json.JSONDecodeError as exc:
        return [f"{field} is not JSON ({exc.msg}): {attrs_json[:80]!r}; send {example}"]
    if not isinstance(attrs, dict):
        return [f"{field} is not a JSON object: {attrs_json[:80]!r}; send {example}"]
    missing = [a for a in required if not isinstance(attrs.get(a), str) or not attrs[a]]
    if missing:
        return [
            f"{field} {attrs_json[:80]!r} lacks {', '.join(missing)}: sway's ProbeError "
            """carries the probe's name, e.g. {"probe": "logprob_of"}"""
        ]
    return []
