"""Proxies satisfy sway's runtime protocols exactly as far as the worker can."""

from __future__ import annotations

import itertools

import pytest
from dlm_sway.core.model import Model
from dlm_sway.core.scoring import (
    DifferentialBackend,
    NullCalibratedBackend,
    PreflightCheckable,
    ScalableDifferentialBackend,
    ScoringBackend,
)

from tests.helpers import spawn_dummy

OPTIONAL = ("scalable", "null", "preflight")
SETS = [c for n in range(4) for c in itertools.combinations(OPTIONAL, n)]


@pytest.mark.parametrize("kept", SETS, ids=lambda s: "+".join(s) or "differential-only")
def test_isinstance_follows_capabilities(kept: tuple[str, ...]) -> None:
    with spawn_dummy(protocols=",".join(kept)) as proxy:
        assert isinstance(proxy, DifferentialBackend)
        assert isinstance(proxy, ScalableDifferentialBackend) == ("scalable" in kept)
        assert isinstance(proxy, NullCalibratedBackend) == ("null" in kept)
        assert isinstance(proxy, PreflightCheckable) == ("preflight" in kept)
        caps = proxy.description.capabilities
        assert (caps.scalable, caps.null_calibrated, caps.preflight) == tuple(
            p in kept for p in OPTIONAL
        )
        expected = ["DifferentialBackend"]
        expected += ["NullCalibratedBackend"] if "null" in kept else []
        expected += ["ScalableDifferentialBackend"] if "scalable" in kept else []
        assert list(proxy.__sway_protocols__) == expected
        with proxy.as_base() as view:
            assert isinstance(view, ScoringBackend) and isinstance(view, Model)


def test_unadvertised_view_is_rejected_by_the_worker_too() -> None:
    """Even a caller that bypasses the proxy class gets UNIMPLEMENTED, not a crash."""
    from swayworker.codec import LogprobOf, Request, ViewKey

    with spawn_dummy(protocols="") as proxy:
        with pytest.raises(NotImplementedError, match="no scaled view"):
            proxy.score(Request(ViewKey.scaled(0.5), LogprobOf("a", " b")))
        with proxy.as_base() as view:
            assert view.logprob_of("a", " b") < 0
