"""``swayhost``'s public surface: ``__all__`` complete and sorted, typed, shipped as typed.

After httpx's ``tests/test_exported_members.py``: every public member of the
package is listed in ``__all__`` and the list is sorted; on top, no public
signature says ``Any`` (results are typed), and the wheel carries ``py.typed``.
"""

from __future__ import annotations

import inspect
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import swayhost
from swayhost.envs.spec import EnvSpec

ROOT = Path(__file__).resolve().parents[1]
TYPE_CHECKING_NAMES = {"EnvSpec": EnvSpec}
"""Names the package imports for annotations only (``if TYPE_CHECKING:``)."""


def test_all_lists_every_public_member_in_order() -> None:
    exported = swayhost.__all__
    public = {
        name
        for name, value in vars(swayhost).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported == sorted(exported)
    assert set(exported) == public


def _signatures(name: str, member: object) -> Iterator[tuple[str, Callable[..., object]]]:
    if inspect.isfunction(member):
        yield name, member
    elif inspect.isclass(member) and member.__module__.startswith("swayhost"):
        for attr, value in vars(member).items():
            if inspect.isfunction(value) and (not attr.startswith("_") or attr == "__init__"):
                yield f"{name}.{attr}", value


def _mentions_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    return any(_mentions_any(arg) for arg in typing.get_args(hint))


def test_no_public_signature_says_any() -> None:
    untyped = []
    for name in swayhost.__all__:
        for label, function in _signatures(name, getattr(swayhost, name)):
            hints = typing.get_type_hints(function, localns=TYPE_CHECKING_NAMES)
            untyped.extend(f"{label}: {key}" for key, hint in hints.items() if _mentions_any(hint))
    assert untyped == []


def test_results_are_typed() -> None:
    view = typing.get_type_hints(swayhost.RemoteView.rolling_logprob)["return"]
    assert view.__name__ == "RollingLogprobResult"
    dist = typing.get_type_hints(swayhost.RemoteView.next_token_dist)["return"]
    assert dist.__name__ == "TokenDistResult"


def test_the_packages_ship_py_typed() -> None:
    for package in ("host/swayhost", "workers/swayworker"):
        assert (ROOT / package / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["swayhost"]
    assert "py.typed" in package_data["swayworker"]
