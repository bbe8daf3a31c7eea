"""Scale-out on Ray: workers placed as Ray actors on a local cluster, scored over gRPC.

The test starts its own Ray cluster on loopback (2 CPUs, no dashboard). Four
adapters (the tiny model's and three made from it by scaling its LoRA B
matrices) are evaluated over two Ray-placed HF workers in parallel and must
give the numbers of local workers; the wall time of both ways is printed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import swayhost
import swayhost.ray
import yaml
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub
from safetensors.numpy import load_file, save_file
from swayworker.hf.tiny import TinyModel

from tests.evaluation import differential_report, same_report
from tests.helpers import listens_on_loopback_only, process_alive, spawn_dummy, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LORA_B_SCALES = (0.5, 1.5, -1.0)
"""Three more adapters: the tiny one's update, halved, enlarged, reversed."""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A single-node Ray on loopback only: every Ray process, actors included, binds 127.0.0.1.

    Ray turns a loopback node address into the machine's reachable one unless
    clusters are off, which is what this variable (read when ray is imported,
    by every Ray process) does; so ray is imported here, not at collection.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            assert ray.util.get_node_ip_address() == "127.0.0.1"
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def adapters(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("adapters")
    made = [tiny_model.adapter_dir]
    weights = load_file(str(tiny_model.adapter_dir / "adapter_model.safetensors"))
    for scale in LORA_B_SCALES:
        target = folder / f"adapter-b{scale:+g}"
        shutil.copytree(tiny_model.adapter_dir, target)
        scaled = {k: v * scale if ".lora_B." in k else v for k, v in weights.items()}
        save_file(scaled, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
        made.append(target)
    return made


def _specs(tiny: TinyModel, adapters: list[Path], env: dict[str, str]) -> list[swayhost.ModelSpec]:
    worker = swayhost.WorkerOptions(env=env)
    return [
        swayhost.ModelSpec(
            kind="hf",
            base=str(tiny.base_dir),
            adapter=adapter,
            dtype="fp32",
            device="cpu",
            worker=worker,
        )
        for adapter in adapters
    ]


def _evaluate(backend: swayhost.RemoteBackend) -> tuple[dict[str, Any], int, bool]:
    """The report, the worker's pid, and whether it listens on loopback only."""
    return differential_report(backend), backend.pid, listens_on_loopback_only(backend.pid)


def test_four_adapters_over_two_ray_workers_match_local_workers(
    ray_cluster: None, tiny_model: TinyModel, adapters: list[Path]
) -> None:
    # Ray runs an actor with OMP_NUM_THREADS = its num_cpus (1). Another thread
    # count moves a next-token log-softmax in its last bits (~3e-6), so the
    # local workers run with one thread too, and every number must be equal.
    local_specs = _specs(tiny_model, adapters, {"OMP_NUM_THREADS": "1"})
    started = time.monotonic()
    local = []
    for spec in local_specs:  # what a plain loop over build() does: a worker per adapter
        with swayhost.build(spec) as backend:
            local.append(differential_report(backend))
    local_s = time.monotonic() - started

    specs = _specs(tiny_model, adapters, {})
    timings = {}
    for workers in (2, 1):
        started = time.monotonic()
        placed = swayhost.ray.evaluate_adapters(specs, _evaluate, workers=workers)
        timings[workers] = time.monotonic() - started
        for (got, _, loopback), want in zip(placed, local, strict=True):
            assert same_report(got, want)
            assert loopback, "a Ray-placed worker listened off loopback"
        pids = {pid for _, pid, _ in placed}
        assert len(pids) == workers, "each worker should serve adapter after adapter"
        assert not any(process_alive(pid) for pid in pids), "the pool ends its workers"
    assert len({str(report["ft"]) for report in local}) == 4, "the adapters should differ"
    print(
        f"\n4 adapters, wall time: local workers one after another {local_s:.1f}s; "
        f"Ray, 1 worker {timings[1]:.1f}s; Ray, 2 workers in parallel {timings[2]:.1f}s "
        f"({local_s / timings[2]:.2f}x the local loop, {timings[1] / timings[2]:.2f}x 1 worker)"
    )


def test_a_pool_backend_loads_the_spec_asked_for(
    ray_cluster: None, tiny_model: TinyModel, adapters: list[Path]
) -> None:
    spec = _specs(tiny_model, adapters[1:2], {})[0]
    with swayhost.ray.RayWorkerPool("hf", 1) as pool, pool.backend(spec) as backend:
        assert backend.spec.adapter == adapters[1]
        assert backend.description.model.adapter_path == str(adapters[1])
        dummy = swayhost.ModelSpec(kind="dummy", base="toy")
        with pytest.raises(ValueError, match="this pool runs 'hf' workers"), pool.backend(dummy):
            pass


def test_launcher_ray_spawns_a_worker_that_recovers_from_a_crash(ray_cluster: None) -> None:
    options = swayhost.RayOptions(num_cpus=1)
    worker = swayhost.WorkerOptions(
        launcher="ray", ray=options, cache_bytes=0
    )  # every call goes out
    spec = swayhost.ModelSpec(kind="dummy", base="toy", worker=worker)
    with spawn_dummy() as local:
        want = differential_report(local)
    with swayhost.spawn(spec) as backend:
        first = backend.pid
        assert psutil.Process(first).ppid() != os.getpid(), "the actor, not this host, runs it"
        assert same_report(differential_report(backend), want)
        psutil.Process(first).send_signal(signal.SIGKILL)
        wait_until(lambda: not process_alive(first))
        assert same_report(differential_report(backend), want)  # a new actor, a new worker
        assert backend.pid != first
        assert backend.stats().restarts == 1
        last = backend.pid
    wait_until(lambda: not process_alive(last))


def test_a_worker_can_be_reached_over_mutual_tls_with_pinned_certificates(
    ray_cluster: None,
) -> None:
    # What a worker on another node gets; here the node's address is loopback.
    worker = swayhost.WorkerOptions(launcher="ray", ray=swayhost.RayOptions(tls=True))
    with swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy", worker=worker)) as backend:
        with spawn_dummy() as local:
            assert same_report(differential_report(backend), differential_report(local))
        handshake = backend._conn.endpoint.handshake
        assert handshake is not None
        with (
            grpc.insecure_channel(handshake.address) as plaintext,
            pytest.raises(grpc.RpcError) as refused,
        ):
            HealthStub(plaintext).Check(HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert listens_on_loopback_only(backend.pid)


def test_a_pool_sends_each_adapter_to_a_worker_holding_its_base(
    ray_cluster: None, tiny_model: TinyModel, adapters: list[Path], tmp_path: Path
) -> None:
    """Adapters of two bases, interleaved, over two workers: each base loads once per worker.

    What each worker serves is read from the worker itself (its pid and the
    spec its Load reports), in the order it served them: a worker switching
    to a base it held before would show as that base appearing twice in its
    sequence.
    """
    other_base = tmp_path / "other-base"
    shutil.copytree(tiny_model.base_dir, other_base)  # another base, as far as a worker knows
    first = _specs(tiny_model, adapters[:3], {})
    second = [dataclasses.replace(spec, base=str(other_base)) for spec in first]
    specs = [spec for pair in zip(first, second, strict=True) for spec in pair]
    served: list[tuple[int, str, str]] = []

    def record(backend: swayhost.RemoteBackend) -> tuple[str, str]:
        loaded = backend.description.loaded_spec
        served.append((backend.pid, loaded.base, loaded.adapter))
        return loaded.base, loaded.adapter

    with swayhost.ray.RayWorkerPool("hf", 2) as pool:
        got = pool.map(record, specs)
        loads = pool.base_loads()
    assert got == [(spec.base, str(spec.adapter)) for spec in specs], "results in spec order"
    assert len(served) == 6
    by_worker: dict[int, list[str]] = {}
    for pid, base, _ in served:
        by_worker.setdefault(pid, []).append(base)
    assert len(by_worker) == 2, "both workers served"
    for pid, bases in by_worker.items():
        switches = [b for i, b in enumerate(bases) if i == 0 or bases[i - 1] != b]
        assert len(switches) == len(set(switches)), f"worker {pid} loaded a base twice: {bases}"
    # A worker may take up the other base once its own runs out: once, never back and forth.
    pairs = sum(len(set(bases)) for bases in by_worker.values())
    assert 2 <= pairs <= 4
    counts = [n for per_worker in loads.values() for n in per_worker.values()]
    assert counts == [1] * pairs, "the pool's count of base loads is the workers' own"

    # One worker, bases interleaved: it serves one base's adapters, then the other's.
    served.clear()
    with swayhost.ray.RayWorkerPool("hf", 1) as pool:
        got = pool.map(record, specs[:4])
    assert got == [(spec.base, str(spec.adapter)) for spec in specs[:4]]
    bases = [base for _, base, _ in served]
    assert bases == [first[0].base] * 2 + [str(other_base)] * 2, bases


class _Quiet:
    """A sweep's progress, kept instead of printed."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def started(self, adapter: Any) -> None:
        pass

    def finished(self, result: Any) -> None:
        self.labels.append(result.adapter.label)


def test_a_sweep_with_launcher_ray_runs_on_a_pool_and_equals_a_local_sweep(
    ray_cluster: None,
    tiny_model: TinyModel,
    adapters: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from swayhost.sweep import run_sweep
    from swayworker.hf.checkpoints import build_corrupt

    from tests.test_sway_run import differences
    from tests.test_sweep import sway_yaml

    spec = tmp_path / "sway.yaml"
    hosted = sway_yaml(
        tiny_model, {"kind": "custom", "entry_point": "swayhost.sway:HF"}, tiny_model.adapter_dir
    )
    spec.write_text(yaml.safe_dump(hosted))
    corrupt = build_corrupt(tiny_model.adapter_dir, tmp_path / "corrupt")
    swept = [*adapters[:3], corrupt]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    outs = {}
    for launcher in ("local", "ray"):
        config = tmp_path / f"{launcher}.yaml"
        # Ray runs an actor with one OpenMP thread: the local workers too, for equal numbers.
        hf = {"launcher": launcher, "env": {"OMP_NUM_THREADS": "1"}}
        config.write_text(yaml.safe_dump({"workers": {"hf": hf}}))
        monkeypatch.setenv("SWAYHOST_CONFIG", str(config))
        progress = _Quiet()
        results = run_sweep(spec, swept, tmp_path / launcher, progress=progress, ray_workers=2)
        assert sorted(progress.labels) == sorted(r.adapter.label for r in results)
        by_path = {r.adapter.path: r for r in results}
        assert [by_path[a].status for a in swept] == ["done", "done", "done", "failed"]
        assert str(corrupt) in (by_path[corrupt].error or "")
        outs[launcher] = {by_path[a].adapter.label: by_path[a].report for a in swept[:3]}
    for label, want in outs["local"].items():
        assert want is not None
        problems, _ = differences(want, outs["ray"][label] or {})
        assert not problems, f"{label}: " + "\n".join(problems[:20])
