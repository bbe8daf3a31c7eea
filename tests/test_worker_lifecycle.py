"""Real worker processes over real Unix sockets: start, talk, stop, fail well."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import swayhost
from swayhost import (
    ModelSpec,
    RecoveryPolicy,
    RestartBudgetExhausted,
    WorkerCrashedError,
    WorkerOptions,
    WorkerStartError,
)
from swayplugin.v1 import backend_pb2 as pb
from swayworker.protocol import MAGIC_COOKIE_KEY, PROTOCOL_VERSION

from tests.helpers import FAKE_WORKERS, fake_worker, process_alive, spawn_dummy


@pytest.fixture(scope="module")
def dummy() -> swayhost.RemoteBackend:
    backend = spawn_dummy()
    yield backend
    backend.close()


def test_describe_reports_worker_and_model(dummy: swayhost.RemoteBackend) -> None:
    d = dummy.description
    assert d.protocol_version == PROTOCOL_VERSION
    assert d.worker_kind == "dummy"
    assert d.runtime.language == "python"
    assert d.runtime.pid == dummy.pid
    assert "grpcio" in d.framework_versions and "python" in d.framework_versions
    caps = d.capabilities
    assert (caps.differential, caps.scalable, caps.null_calibrated, caps.preflight) == (
        True,
        True,
        True,
        True,
    )
    assert caps.logprob_of and caps.rolling_logprob and caps.next_token_dist and caps.generate
    assert d.limits.max_batch > 0 and d.limits.max_message_bytes >= 64 * 1024 * 1024
    assert d.model.loaded and d.model.vocab_size == 64
    assert dummy.cache_identity() == "dummy:64"


def test_socket_is_private(dummy: swayhost.RemoteBackend) -> None:
    address = Path(dummy._conn.endpoint.handshake.address)
    assert stat.S_IMODE(address.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(address.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(address.stat().st_mode)


def test_every_operation_on_every_view(dummy: swayhost.RemoteBackend) -> None:
    views = {
        "base": dummy.as_base,
        "ft": dummy.as_finetuned,
        "scaled": lambda: dummy.as_scaled_adapter(0.5),
        "null": lambda: dummy.as_null_adapter(7),
    }
    seen: dict[str, tuple[float, float]] = {}
    for name, enter in views.items():
        with enter() as view:
            lp = view.logprob_of("the cat sat", " on the mat")
            rolling = view.rolling_logprob("the cat sat on the mat")
            dist = view.next_token_dist("the cat", top_k=10)
            text = view.generate("the cat", max_new_tokens=3)
        assert lp < 0
        assert rolling.num_tokens == 6 and rolling.logprobs.shape == (5,)
        assert rolling.total_logprob == pytest.approx(float(rolling.logprobs.sum()), rel=1e-6)
        assert dist.token_ids.dtype.name == "int64" and dist.logprobs.dtype.name == "float32"
        assert list(dist.logprobs) == sorted(dist.logprobs, reverse=True)
        assert dist.vocab_size == 64 and dist.tail_logprob is not None and dist.tail_logprob < 0
        assert len(text.split()) == 3
        seen[name] = (lp, float(dist.logprobs[0]))
    assert len({v for v in seen.values()}) == 4, "each view must score differently"


def test_scaled_endpoints_equal_base_and_ft(dummy: swayhost.RemoteBackend) -> None:
    def score(enter: object) -> float:
        with enter() as view:  # type: ignore[operator]
            return float(view.logprob_of("one two", " three four"))

    assert score(lambda: dummy.as_scaled_adapter(0.0)) == score(dummy.as_base)
    assert score(lambda: dummy.as_scaled_adapter(1.0)) == score(dummy.as_finetuned)


def test_null_views_are_seeded(dummy: swayhost.RemoteBackend) -> None:
    def score(seed: int, rank_scale: float = 1.0) -> float:
        with dummy.as_null_adapter(seed, rank_scale=rank_scale) as view:
            return float(view.logprob_of("one two", " three"))

    assert score(1) == score(1)
    assert score(1) != score(2)
    assert score(1, rank_scale=0.5) != score(1)
    with (
        pytest.raises(ValueError, match="rank_scale must be positive and finite"),
        dummy.as_null_adapter(1, rank_scale=0.0),
    ):
        pass


def test_full_vocab_top_k_has_no_tail(dummy: swayhost.RemoteBackend) -> None:
    with dummy.as_base() as view:
        dist = view.next_token_dist("x y", top_k=1000)
    assert dist.token_ids.size == 64 and dist.tail_logprob is None


def test_batch_with_one_failing_item(dummy: swayhost.RemoteBackend) -> None:
    pairs = [("a b", " c"), ("a b", ""), ("x y z", " w v")]
    with dummy.as_finetuned() as view:
        batched = view.logprob_of_many(pairs, return_exceptions=True)
        singles = [view.logprob_of(*pairs[0]), view.logprob_of(*pairs[2])]
        with pytest.raises(Exception, match="completion tokenized to zero tokens"):
            view.logprob_of_many(pairs)
    assert batched[0] == singles[0] and batched[2] == singles[1]
    assert isinstance(batched[1], Exception)
    assert str(batched[1]) == (
        "probe 'logprob_of': completion tokenized to zero tokens (prompt='a b', completion='')"
    )


def test_batch_mixes_views_and_ops(dummy: swayhost.RemoteBackend) -> None:
    from swayworker.codec import LogprobOf, NextTokenDist, Request, RollingLogprobOp, ViewKey

    requests = [
        Request(ViewKey.base(), LogprobOf("a", " b")),
        Request(ViewKey.ft(), NextTokenDist("a b", 5)),
        Request(ViewKey.scaled(0.3), RollingLogprobOp("a b c")),
        Request(ViewKey.null(4), LogprobOf("a", " b")),
        Request(ViewKey.base(), NextTokenDist("a b", 5)),
    ]
    batched = dummy.score_many(requests)
    singles = [dummy.score(r) for r in requests]
    assert batched[0] == singles[0] and batched[3] == singles[3]
    for i in (1, 4):
        assert batched[i].token_ids.tolist() == singles[i].token_ids.tolist()
        assert batched[i].logprobs.tobytes() == singles[i].logprobs.tobytes()
    assert batched[2].logprobs.tobytes() == singles[2].logprobs.tobytes()


def test_bad_arguments_raise_value_errors(dummy: swayhost.RemoteBackend) -> None:
    with dummy.as_base() as view:
        with pytest.raises(ValueError, match="top_k must be a positive integer"):
            view.next_token_dist("a", top_k=0)
        with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
            view.generate("a", max_new_tokens=0)
        with pytest.raises(ValueError, match="at most 512"):
            view.next_token_dist("w " * 600)
        assert view.logprob_of("a", " b") < 0  # the worker is still fine


def test_preflight(dummy: swayhost.RemoteBackend) -> None:
    assert dummy.preflight_finite_check() == (True, "")
    with spawn_dummy(nan_ft="1") as broken:
        ok, reason = broken.preflight_finite_check()
    assert not ok and "ft view produced 8/8 non-finite" in reason


def test_view_exclusivity_and_stale_views(dummy: swayhost.RemoteBackend) -> None:
    with (
        dummy.as_base() as view,
        pytest.raises(RuntimeError, match="already active"),
        dummy.as_finetuned(),
    ):
        pass
    with pytest.raises(RuntimeError, match="used after its with-block ended"):
        view.logprob_of("a", " b")


def test_close_stops_worker_and_removes_socket_dir() -> None:
    backend = spawn_dummy()
    pid = backend.pid
    socket_dir = Path(backend._conn.endpoint.handshake.address).parent
    assert socket_dir.exists() and process_alive(pid)
    backend.close()
    backend.close()  # idempotent
    assert not process_alive(pid)
    assert not socket_dir.exists()
    with pytest.raises(WorkerCrashedError, match="closed"), backend.as_base() as view:
        view.logprob_of("a", " b")


def test_context_manager_closes() -> None:
    with spawn_dummy() as backend:
        pid = backend.pid
    assert not process_alive(pid)


def test_invalid_handshake_is_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match="invalid handshake line"):
        swayhost.spawn(ModelSpec(kind="dummy", base="x", worker=fake_worker("bad_handshake.py")))
    assert time.monotonic() - started < 10


def test_a_refused_handshake_leaves_no_socket_folder(tmp_path: Path) -> None:
    """The worker is killed for its line, so the host removes the folder the line names."""
    worker = fake_worker("rejected_handshake.py", env={"TMPDIR": str(tmp_path)})
    with pytest.raises(WorkerStartError, match="handshake version 2 is not supported"):
        swayhost.spawn(ModelSpec(kind="dummy", base="x", worker=worker))
    assert list(tmp_path.iterdir()) == []


def test_wrong_protocol_version_is_a_clear_error() -> None:
    with pytest.raises(WorkerStartError, match="contract version 99 is not supported"):
        swayhost.spawn(ModelSpec(kind="dummy", base="x", worker=fake_worker("wrong_version.py")))


def test_worker_that_never_starts_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match=r"no handshake within 1.5s") as info:
        swayhost.spawn(
            ModelSpec(
                kind="dummy", base="x", worker=fake_worker("never_starts.py", startup_timeout=1.5)
            )
        )
    assert time.monotonic() - started < 8
    assert "loading something very slow" in str(info.value)


def test_worker_that_dies_at_start_shows_its_stderr() -> None:
    with pytest.raises(WorkerStartError, match="exited with code 3") as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="x", worker=fake_worker("dies_at_start.py")))
    assert "imaginary_framework" in str(info.value)


def test_wrong_cookie_is_refused() -> None:
    worker = WorkerOptions(env={MAGIC_COOKIE_KEY: "not-the-cookie"})
    with pytest.raises(WorkerStartError, match="exited with code 1") as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="x", worker=worker))
    assert "This is a sway plugin worker" in str(info.value)


def test_missing_interpreter_is_a_clear_error() -> None:
    worker = WorkerOptions(python="/nonexistent/bin/python")
    with pytest.raises(WorkerStartError, match="cannot run /nonexistent/bin/python"):
        swayhost.spawn(ModelSpec(kind="dummy", base="x", worker=worker))


def test_worker_run_by_hand_explains_itself() -> None:
    env = {k: v for k, v in os.environ.items() if k != MAGIC_COOKIE_KEY}
    out = subprocess.run(
        [sys.executable, "-m", "swayworker.dummy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "started by the sway-plugin-host" in out.stderr


def test_without_recovery_a_crash_raises_with_its_cause() -> None:
    """RecoveryPolicy.never(): the first crash reaches the caller (tests/test_recovery.py
    covers the default, where the worker is restarted and the call retried)."""
    backend = spawn_dummy(crash_on="boom", recovery=RecoveryPolicy.never())
    pid = backend.pid
    try:
        with backend.as_base() as view:
            with pytest.raises(WorkerCrashedError, match="signal SIGKILL") as info:
                view.logprob_of("boom", " x")
            assert info.value.worker == "dummy" and info.value.cause == "signal"
            with pytest.raises(RestartBudgetExhausted, match="restarts are off"):
                view.logprob_of("a b", " c")
        assert backend.stats().restarts == 0 and not process_alive(pid)
    finally:
        backend.close()


def test_sigterm_stops_worker_cleanly() -> None:
    backend = spawn_dummy()
    socket_dir = Path(backend._conn.endpoint.handshake.address).parent
    os.kill(backend.pid, signal.SIGTERM)
    assert backend._conn.endpoint.wait(5)
    assert backend._conn.endpoint.poll() == 0
    assert not socket_dir.exists()
    backend.close()


def test_worker_exits_when_host_is_sigkilled() -> None:
    host = subprocess.Popen(
        [sys.executable, str(FAKE_WORKERS / "host_that_dies.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        worker_pid = int(host.stdout.readline().split()[0])
        socket_dir = Path(host.stdout.readline().strip())
        assert process_alive(worker_pid)
        host.kill()
        host.wait(5)
        deadline = time.monotonic() + 2.0
        while process_alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(worker_pid), "worker outlived its host by more than 2 s"
        assert not socket_dir.exists()
    finally:
        host.kill()


def test_load_waits_for_the_warm_up_that_runs_beside_the_handshake() -> None:
    """The handshake no longer waits for the framework imports; Load does, and a stop ends it."""
    from swayworker.server import _after_warm_up, _start_warm_up

    release = threading.Event()
    order: list[str] = []
    warm = _start_warm_up(lambda: (release.wait(5), order.append("warm")))
    stop = threading.Event()
    load = _after_warm_up(warm, lambda spec: order.append("load") or "backend", stop)
    loading = ThreadPoolExecutor(1).submit(load, pb.ModelSpec())
    time.sleep(0.3)
    assert not loading.done() and order == []  # still warming up
    release.set()
    assert loading.result(timeout=5) == "backend"
    assert order == ["warm", "load"]

    stuck = _after_warm_up(threading.Event(), lambda spec: "never", stop)
    stop.set()
    with pytest.raises(RuntimeError, match="the worker is stopping"):
        stuck(pb.ModelSpec())
