"""Workers forked from a pre-imported template (``RecoveryPolicy.fork_template``, on by default).

A restarted worker skips the interpreter start and the framework imports:
the template did those once and forks each worker. These tests pin down
that the template is really used (the worker's parent), that a crashed
worker is replaced by a fresh fork with the same answers, that nothing is
left behind however the host ends, and that the template stays out of the
way where it does not apply (off, no recovery, foreign commands), and that a
standby is forked from it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import swayhost
import yaml
from swayhost import ModelSpec, RecoveryPolicy, WorkerOptions
from swayhost.config import worker_options
from swayworker.hf.tiny import TinyModel

from tests.helpers import FAKE_WORKERS, fake_worker, same_result, wait_until

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
FORK = {**FAST, "fork_template": True}


def _dummy(**policy: object) -> swayhost.RemoteBackend:
    options = WorkerOptions(cache_bytes=0, recovery=RecoveryPolicy(**{**FORK, **policy}))  # type: ignore[arg-type]
    return swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))


def _parent(pid: int) -> psutil.Process:
    return psutil.Process(psutil.Process(pid).ppid())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_are_forked_from_one_template_across_restarts() -> None:
    with _dummy() as backend, backend.as_finetuned() as view:
        template = _parent(backend.pid)
        assert template.cmdline()[-2:] == ["swayworker.template", "swayworker.dummy"]
        assert template.ppid() == os.getpid()
        want = [view.logprob_of("The sky is", f" blue {i}") for i in range(3)]
        for round_ in range(3):
            first = backend.pid
            os.kill(first, signal.SIGKILL)
            got = [view.logprob_of("The sky is", f" blue {i}") for i in range(3)]
            assert got == want
            assert backend.pid != first
            assert _parent(backend.pid).pid == template.pid  # the same template forked it
            assert backend.stats().restarts == round_ + 1
        assert backend.transport == "frames"
    wait_until(lambda: not _alive(template.pid), timeout=5)


def test_a_template_started_from_a_thread_outlives_that_thread() -> None:
    """A host that builds from a thread pool keeps its template when the pool ends.

    The kernel's parent-death signal fires when the *thread* that started a
    process exits; a template that took it for its host's death quit, and
    took its worker with it, as soon as the pool shut down (three builds in
    one ``ThreadPoolExecutor`` lost a worker this way).
    """
    with ThreadPoolExecutor(1) as pool:
        backend = pool.submit(_dummy).result()
    with backend, backend.as_finetuned() as view:  # the pool's thread has exited
        first = backend.pid
        template = _parent(first)
        time.sleep(1.0)  # the signal came as the thread exited; give a wrong handler time to act
        assert _alive(template.pid)
        assert view.logprob_of("The sky is", " blue") < 0
        assert (backend.pid, backend.stats().restarts) == (first, 0)
    wait_until(lambda: not _alive(template.pid), timeout=5)


def test_a_forked_worker_reports_its_exit_like_a_spawned_one() -> None:
    with _dummy(max_restarts=0) as backend:
        backend._conn.endpoint.kill()
        assert backend._conn.endpoint.poll() == -signal.SIGKILL
        assert "signal SIGKILL" in backend._conn.endpoint.describe_exit()


def test_a_live_forked_worker_is_polled_without_asking_the_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host polls its worker before every call; a round trip to the template each
    time cost a sixth of a small call. Only an exited worker's code is asked for."""
    with _dummy() as backend, backend.as_finetuned() as view:
        child = backend._conn.endpoint._proc
        asked: list[int] = []
        ask = child._template.returncode
        monkeypatch.setattr(
            child._template, "returncode", lambda pid: asked.append(pid) or ask(pid)
        )
        for i in range(10):
            view.logprob_of("The sky is", f" blue {i}")
        assert asked == []
        os.kill(child.pid, signal.SIGKILL)
        wait_until(lambda: child.poll() is not None, timeout=5)
        assert child.poll() == -signal.SIGKILL
        assert set(asked) == {child.pid}


def test_closing_stops_worker_and_template_and_leaves_no_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    script = (
        "import psutil, swayhost\n"
        "policy = swayhost.RecoveryPolicy(fork_template=True)\n"
        "b = swayhost.spawn(swayhost.ModelSpec(kind='dummy', base='toy',"
        " worker=swayhost.WorkerOptions(recovery=policy)))\n"
        "print(b.pid, psutil.Process(b.pid).ppid(), flush=True)\n"
        "b.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    worker, template = (int(x) for x in done.stdout.split())
    wait_until(lambda: not _alive(worker) and not _alive(template), timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_a_sigkilled_host_takes_template_and_worker_with_it(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    host = subprocess.Popen(
        [sys.executable, str(FAKE_WORKERS / "host_with_template.py")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert host.stdout is not None
        worker, template = (int(x) for x in host.stdout.readline().split())
        assert _alive(worker) and _alive(template)
        host.kill()
        host.wait(5)
        killed = time.monotonic()
        wait_until(lambda: not _alive(worker) and not _alive(template), timeout=5)
        assert time.monotonic() - killed < 2.0, "worker or template outlived the host by 2 s"
        try:
            wait_until(lambda: list(tmp_path.iterdir()) == [], timeout=5)
        except AssertionError:
            raise AssertionError(
                f"left behind: {sorted(p.name for p in tmp_path.iterdir())}"
            ) from None
    finally:
        host.kill()


@pytest.mark.parametrize(
    "policy",
    [{"fork_template": False}, {"max_restarts": 0}],
    ids=["off", "no-recovery"],
)
def test_no_template_where_it_does_not_apply(policy: dict[str, object]) -> None:
    with _dummy(**policy) as backend:
        assert psutil.Process(backend.pid).ppid() == os.getpid()
        assert "swayworker.template" not in psutil.Process(backend.pid).cmdline()


def test_a_standby_is_forked_from_the_template_too() -> None:
    """A spawned standby was "ready" at its handshake and imported for seconds
    after it; forked, it holds every import the moment it exists."""
    with _dummy(standby=True) as backend, backend.as_finetuned() as view:
        want = view.logprob_of("The sky is", " blue")
        template = _parent(backend.pid)
        wait_until(lambda: backend.stats().standby_ready, timeout=30)
        spare = backend._supervisor._spare
        assert spare is not None
        assert _parent(spare.endpoint.pid).pid == template.pid
        os.kill(backend.pid, signal.SIGKILL)
        assert view.logprob_of("The sky is", " blue") == want
        assert backend.pid == spare.endpoint.pid  # the standby took over


def test_a_command_that_is_not_a_built_in_worker_is_spawned() -> None:
    spec = ModelSpec(kind="dummy", base="toy", worker=fake_worker("broken.py"))
    with pytest.raises(swayhost.SwayHostError):
        swayhost.spawn(spec)  # spawned directly: its own start-up error, not a template's


def test_the_config_file_turns_the_template_off(tmp_path: Path) -> None:
    path = tmp_path / "swayhost.yaml"
    path.write_text(yaml.safe_dump({"workers": {"hf": {"recovery": {"fork_template": False}}}}))
    assert worker_options("hf", path).recovery.fork_template is False
    assert RecoveryPolicy().fork_template is True  # the default


@pytest.mark.slow
def test_an_hf_worker_forked_from_the_template_equals_a_spawned_one(
    tiny_model: TinyModel,
) -> None:
    def spec(fork: bool) -> ModelSpec:
        return ModelSpec(
            kind="hf",
            base=str(tiny_model.base_dir),
            adapter=Path(tiny_model.adapter_dir),
            dtype="fp32",
            device="cpu",
            worker=WorkerOptions(
                cache_bytes=0, recovery=RecoveryPolicy(fork_template=fork, **FAST)
            ),
        )

    texts = ["The river ran", "In the town the baker sold warm bread"]
    with swayhost.build(spec(True)) as forked, swayhost.build(spec(False)) as spawned:
        assert "swayworker.template" in _parent(forked.pid).cmdline()
        with forked.as_finetuned() as a, spawned.as_finetuned() as b:
            want = [b.rolling_logprob(t) for t in texts]
            assert all(
                same_result(a.rolling_logprob(t), w) for t, w in zip(texts, want, strict=True)
            )
            os.kill(forked.pid, signal.SIGKILL)  # the restarted fork loads the model again
            assert all(
                same_result(a.rolling_logprob(t), w) for t, w in zip(texts, want, strict=True)
            )
            assert a.generate("The river", max_new_tokens=4) == b.generate(
                "The river", max_new_tokens=4
            )
        assert forked.stats().restarts == 1


def test_a_stop_that_comes_while_the_template_cleans_up_leaves_nothing(tmp_path: Path) -> None:
    """The host's death arrives twice at once (stdin EOF and a signal): the
    second must not interrupt the removal of the socket folder the first began."""
    from swayworker.protocol import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE

    env = {**os.environ, "TMPDIR": str(tmp_path), MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE}
    for _ in range(5):
        template = subprocess.Popen(
            [sys.executable, "-m", "swayworker.template", "swayworker.dummy"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert template.stdin is not None and template.stdout is not None
        assert template.stdout.readline().startswith("template|")
        template.stdin.close()
        while template.poll() is None:  # a storm of stops while it unwinds
            with contextlib.suppress(ProcessLookupError):
                os.kill(template.pid, signal.SIGTERM)
        # exit 0, or SIGTERM's default once the interpreter has shut down
        assert template.returncode in (0, -signal.SIGTERM)
        assert list(tmp_path.iterdir()) == []


def test_the_hf_warm_up_builds_what_a_first_load_would_and_starts_no_thread() -> None:
    """A forked worker's Load is a first Load in its process: what transformers
    builds once (its checkpoint conversion table, ~0.18 s of regex compiling)
    must be built by the template's warm-up, without a thread a fork would break."""
    code = (
        "import swayworker.hf.__main__ as m, threading;"
        "from transformers import conversion_mapping as c;"
        "assert c._checkpoint_conversion_mapping_cache is None;"
        "m.import_frameworks();"
        "assert c._checkpoint_conversion_mapping_cache is not None;"
        "assert threading.active_count() == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
