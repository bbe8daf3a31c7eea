"""``swayhost sweep``: sway's suite for every adapter of one base, through one worker.

People test every checkpoint of a fine-tuning run, not one adapter. The
sweep reads a ``sway.yaml`` as ``sway run`` does (same loader, same probe
validation, same runner and score), then runs its suite once per adapter
on backends from ``build_many`` (one worker for the base; a Ray pool with
``launcher: ray``), writing one sway report per adapter under
``OUT/LABEL/`` and a summary across adapters (``swayhost.sweepsummary``).

Resuming is per adapter: an adapter whose report is already written is not
run again, and every scored call goes to a journal folder (one file per
adapter, ``swayhost.journal``), so the adapter a killed sweep was scoring
resumes from its journal. A bad adapter (another base's shapes, a corrupt
file) fails alone: its error, naming its path, goes into the summary and
the other adapters run as if it were not there.

dlm_sway is imported only inside functions: ``import swayhost`` stays light.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import re
import time
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from swayhost import config
from swayhost.build import build_many
from swayhost.errors import ConfigError, spec_validation_error
from swayhost.proxy import RemoteBackend
from swayhost.spec import ModelSpec
from swayhost.sway import HF, MLX

if TYPE_CHECKING:
    from dlm_sway.suite.spec import SwaySpec

log = logging.getLogger("swayhost")

REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
SPEC_FINGERPRINT = "spec.sha256"
"""The file under OUT naming the suite its reports are of (``_claim``)."""
JOURNALS = "journal"
"""The folder under OUT where each adapter's backend keeps its journal file."""
ENTRY_POINT_KINDS = {f"swayhost.sway:{cls.__name__}": cls.worker_kind for cls in (HF, MLX)}
"""``kind: custom`` models the sweep understands: the host's own entry points."""
SWEEP_KINDS = ("hf", "mlx")
"""Kinds with an adapter to sweep (an ``api`` model has none)."""

Status = Literal["done", "resumed", "failed"]


class SweepUsageError(ValueError):
    """Found before anything runs: no usable adapters, an OUT of another suite (exit 2)."""


@dataclass(frozen=True)
class Adapter:
    """One adapter of the sweep and the label its report folder and table row carry."""

    path: Path
    label: str


@dataclass
class AdapterResult:
    """What one adapter's run gave: its sway report, or the error that failed it alone."""

    adapter: Adapter
    status: Status
    report: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    """Scoring calls the worker computed and those served from the journal, for this adapter."""


class Progress(Protocol):
    """Told as each adapter starts and ends (from pool threads, with ``launcher: ray``)."""

    def started(self, adapter: Adapter) -> None: ...

    def finished(self, result: AdapterResult) -> None: ...


# -- the adapters -----------------------------------------------------------------


def natural_key(text: str) -> list[Any]:
    """Sort key that orders digit runs by value: checkpoint-100 < checkpoint-1000."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def expand_adapters(patterns: Sequence[str]) -> list[Path]:
    """Every ``--adapter``, globs expanded, resolved, deduplicated and sorted naturally."""
    found: set[Path] = set()
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = glob.glob(str(Path(pattern).expanduser()))
            if not matches:
                raise SweepUsageError(
                    f"--adapter {pattern!r} matches nothing; check the pattern, and quote "
                    "it so that the shell leaves it to swayhost"
                )
        else:
            if not Path(pattern).expanduser().exists():
                raise SweepUsageError(
                    f"--adapter {pattern!r} does not exist; give an adapter folder "
                    "(or an MLX .npz file), or a glob such as 'run/checkpoint-*'"
                )
            matches = [pattern]
        found.update(Path(m).expanduser().resolve() for m in matches)
    if not found:
        raise SweepUsageError("no adapters to sweep: give at least one --adapter")
    return sorted(found, key=lambda p: natural_key(str(p)))


def label_adapters(paths: Sequence[Path]) -> list[Adapter]:
    """Short unique labels: the folder name, with as many parent folders as it takes."""
    depth = 1
    while True:
        labels = ["__".join(p.parts[-depth:]).lstrip("/") for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return [Adapter(p, label) for p, label in zip(paths, labels, strict=True)]
        depth += 1


# -- the spec -----------------------------------------------------------------


def load_sway_spec(path: Path) -> SwaySpec:
    """``sway.yaml`` loaded and its probes validated, as ``sway run`` does before any load."""
    from dlm_sway.probes.base import validate_all_probes
    from dlm_sway.suite.loader import load_spec

    spec = load_spec(path)
    validate_all_probes(spec.suite)
    if spec.dlm_source is not None:
        log.warning(
            "%s: dlm_source is not resolved by swayhost sweep; probes that need its "
            "sections skip, as in `sway run` without the [dlm] extra",
            path,
        )
    if not spec.defaults.differential:
        raise spec_validation_error(
            "swayhost sweep runs the differential suite (one model, its adapter toggled); "
            "set `defaults.differential: true` in the spec"
        )
    return spec


def base_spec(spec: SwaySpec, journal_folder: Path) -> ModelSpec:
    """The host spec of sway's ``models.ft`` (adapter left out), journaling into the folder."""
    ft = spec.models.ft
    kind: str | None = ft.kind
    if kind == "custom":
        kind = ENTRY_POINT_KINDS.get(ft.entry_point or "")
    if kind not in SWEEP_KINDS:
        described = f"custom ({ft.entry_point})" if ft.kind == "custom" else ft.kind
        raise spec_validation_error(
            f"swayhost sweep runs models.ft of kind hf or mlx (or custom with entry_point "
            f"{' or '.join(ENTRY_POINT_KINDS)}), not {described}: other kinds have no "
            "adapter to sweep"
        )
    try:
        worker = config.worker_options(kind)
    except ConfigError as exc:
        raise spec_validation_error(str(exc)) from exc
    return ModelSpec(
        kind=kind,
        base=ft.base,
        dtype=ft.dtype,
        device=ft.device,
        trust_remote_code=ft.trust_remote_code,
        worker=replace(worker, journal=journal_folder),
    )


def spec_for_adapter(spec: SwaySpec, adapter: Path) -> SwaySpec:
    """sway's spec with ``models.ft.adapter`` set, so the report names the adapter run."""
    ft = spec.models.ft.model_copy(update={"adapter": adapter})
    return spec.model_copy(update={"models": spec.models.model_copy(update={"ft": ft})})


# -- the run --------------------------------------------------------------------


def run_sweep(
    sway_yaml: Path,
    adapters: Sequence[Path],
    out: Path,
    *,
    progress: Progress,
    ray_workers: int = 2,
) -> list[AdapterResult]:
    """sway's suite for every adapter; results in the adapters' natural order.

    Raises sway's ``SpecValidationError`` for a bad spec (before any worker
    starts); an adapter that fails to load or run is a ``failed`` result.
    """
    spec = load_sway_spec(sway_yaml)
    base = base_spec(spec, out / JOURNALS)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, spec, sway_yaml)
    (out / JOURNALS).mkdir(exist_ok=True)
    results: dict[Path, AdapterResult] = {}
    pending: list[Adapter] = []
    for adapter in label_adapters(adapters):
        done = _finished_report(out, adapter)
        if done is None:
            pending.append(adapter)
        else:
            results[adapter.path] = AdapterResult(adapter, "resumed", report=done)
            progress.finished(results[adapter.path])
    runner = _SuiteRunner(spec, sway_yaml, out, progress)
    if base.worker.launcher == "ray":
        outcomes = _run_on_ray(runner, base, pending, ray_workers)
    else:
        outcomes = _run_on_one_worker(runner, base, pending)
    results.update((r.adapter.path, r) for r in outcomes)
    return [results[p] for p in sorted(results, key=lambda p: natural_key(str(p)))]


@dataclass(frozen=True)
class _SuiteRunner:
    """Runs sway's suite for one adapter on a backend and writes its reports."""

    spec: SwaySpec
    sway_yaml: Path
    out: Path
    progress: Progress

    def run(self, adapter: Adapter, backend: RemoteBackend) -> AdapterResult:
        from dlm_sway.suite import report
        from dlm_sway.suite.runner import run as run_suite
        from dlm_sway.suite.score import compute

        self.progress.started(adapter)
        began = time.monotonic()
        before = backend.stats()
        try:
            spec = spec_for_adapter(self.spec, adapter.path)
            suite = run_suite(spec, backend, spec_path=str(self.sway_yaml))
            score = compute(suite, weights=spec.defaults.score_weights)
            folder = self.out / adapter.label
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(folder / REPORT_MARKDOWN, report.to_markdown(suite, score))
            text = report.to_json(suite, score)
            _write_atomically(folder / REPORT_JSON, text)  # last: its presence means done
        except Exception as exc:  # one adapter's failure must not end the sweep
            return self.failed(adapter, exc, time.monotonic() - began)
        after = backend.stats()
        result = AdapterResult(
            adapter,
            "done",
            report=json.loads(text),
            seconds=time.monotonic() - began,
            calls={
                "computed": after.computed - before.computed,
                "journal_hits": after.journal_hits - before.journal_hits,
            },
        )
        self.progress.finished(result)
        return result

    def failed(self, adapter: Adapter, exc: BaseException, seconds: float = 0.0) -> AdapterResult:
        message = str(exc)
        if str(adapter.path) not in message:
            message = f"{adapter.path}: {message}"
        result = AdapterResult(
            adapter, "failed", error=f"{type(exc).__name__}: {message}", seconds=seconds
        )
        self.progress.finished(result)
        return result


def _run_on_one_worker(
    runner: _SuiteRunner, base: ModelSpec, pending: Sequence[Adapter]
) -> list[AdapterResult]:
    """Every pending adapter on backends of one ``build_many``; one after another."""
    results: list[AdapterResult] = []
    with closing(_loaded(runner, base, pending, results)) as loaded:
        for adapter, backend in loaded:
            try:
                results.append(runner.run(adapter, backend))
            finally:
                backend.close()
    return results


def _loaded(
    runner: _SuiteRunner,
    base: ModelSpec,
    pending: Sequence[Adapter],
    failures: list[AdapterResult],
) -> Generator[tuple[Adapter, RemoteBackend], None, None]:
    """Backends of the adapters that load; those that do not become failures, alone.

    ``build_many`` loads every adapter into one worker: one that cannot load
    (another base's shapes, a corrupt file) comes back with its
    ``load_error``, which names its path, and the others are unaffected.
    Only when none loads does it raise; then every adapter fails with that.
    """
    try:
        backends = build_many(base, [a.path for a in pending], worker=base.worker)
    except Exception as exc:
        failures.extend(runner.failed(adapter, exc) for adapter in pending)
        return
    try:
        for adapter, backend in zip(pending, backends, strict=True):
            if backend.load_error is not None:
                failures.append(runner.failed(adapter, backend.load_error))
                continue
            yield adapter, backend
    finally:
        for backend in backends:
            backend.close()


def _run_on_ray(
    runner: _SuiteRunner, base: ModelSpec, pending: Sequence[Adapter], workers: int
) -> list[AdapterResult]:
    """Pending adapters over a Ray pool, each on a worker that holds its base."""
    if not pending:
        return []
    from swayhost.ray.pool import RayWorkerPool  # ray is heavy: only a Ray sweep imports it

    by_path = {a.path: a for a in pending}

    def adapter_of(backend_spec: ModelSpec) -> Adapter:
        assert backend_spec.adapter is not None
        return by_path[backend_spec.adapter]

    with RayWorkerPool(base.kind, min(workers, len(pending)), base.worker) as pool:
        return pool.map(
            lambda backend: runner.run(adapter_of(backend.spec), backend),
            [base.with_adapter(a.path) for a in pending],
            on_load_error=lambda spec, exc: runner.failed(adapter_of(spec), exc),
        )


# -- reports on disk ------------------------------------------------------------


def _claim(out: Path, spec: SwaySpec, sway_yaml: Path) -> None:
    """Tie ``out`` to the suite it holds reports of, so a rerun never mixes two suites.

    The fingerprint is of the spec as sway loaded it (formatting and the
    ft adapter do not count): a rerun with the same suite resumes, with
    another one is refused before anything runs.
    """
    suite = spec_for_adapter(spec, Path("/")).model_dump_json()
    fingerprint = hashlib.sha256(suite.encode()).hexdigest()
    marker = out / SPEC_FINGERPRINT
    if marker.is_file():
        held = marker.read_text(encoding="utf-8").strip()
        if held != fingerprint:
            raise SweepUsageError(
                f"{out} holds a sweep of another suite than {sway_yaml}'s; resuming would mix "
                "their reports. Give another --out, or delete the folder to start over"
            )
        return
    _write_atomically(marker, fingerprint + "\n")


def _finished_report(out: Path, adapter: Adapter) -> dict[str, Any] | None:
    """The report an earlier run wrote for this adapter, or None (then it runs again)."""
    path = out / adapter.label / REPORT_JSON
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if report.get("adapter_id") != str(adapter.path):
        log.warning(
            "%s is a report of %s; running %s again", path, report.get("adapter_id"), adapter.path
        )
        return None
    return report


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` so that a reader (or a resumed sweep) never sees half of it."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
