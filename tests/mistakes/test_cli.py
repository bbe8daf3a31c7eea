"""Mistakes at the ``swayhost`` command line, and the one line each gets back.

Every test runs the real CLI in a subprocess and checks its exit code and
the exact line on stderr, and that no traceback is printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_WORKER = ROOT / "workers" / "node"


def swayhost(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swayhost", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def one_line_error(out: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (its exit code checked)."""
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def unwritable(tmp_path: Path) -> Path:
    """A folder that cannot be created, for this user (root too)."""
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    if not os.access(parent, os.W_OK):
        return parent / "cache"
    return Path("/sys/swayhost-mistakes/cache")  # root ignores modes; /sys refuses even root


def unwritable_message(folder: Path) -> str:
    reason = "Operation not permitted" if str(folder).startswith("/sys/") else "Permission denied"
    return (
        f"error: cannot write the folder {folder}: {reason}; make it writable, or point"
        " SWAYHOST_CACHE_DIR (or XDG_CACHE_HOME) at a folder you can write"
    )


# -- describe ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        ("hf", "--base and --adapter"),
        ("mlx", "--base and --adapter"),
        ("api", "--base and --endpoint"),
        ("custom", "--base and --entry-point"),
    ],
)
def test_describe_a_model_kind_without_a_model(kind: str, flags: str) -> None:
    out = swayhost("describe", "--kind", kind)
    assert one_line_error(out, 2) == (
        f"error: describe --kind {kind} loads a model first: pass {flags}"
        f" (`swayhost workers --kind {kind}` shows its interpreter and versions without one)"
    )


def test_describe_a_worker_command_names_the_command() -> None:
    out = swayhost("describe", "--", sys.executable, "-c", "import sys; sys.exit(4)")
    assert out.returncode == 3
    assert out.stderr.startswith("error: worker 'import sys; sys.exit(4)' exited with code 4")


# -- an unwritable cache folder ----------------------------------------------------


def test_demo_with_an_unwritable_cache(tmp_path: Path, home: dict[str, str]) -> None:
    cache = unwritable(tmp_path)
    out = swayhost("demo", env={**home, "XDG_CACHE_HOME": str(cache)})
    message = unwritable_message(cache / "sway-plugin-host" / "envs")
    assert one_line_error_after_progress(out, 3) == message


def one_line_error_after_progress(out: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line of a command that had said what it was doing first (plain lines)."""
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert all(line.startswith("swayhost: ") for line in lines[:-1]), out.stderr
    return lines[-1]


def test_env_create_with_an_unwritable_cache(tmp_path: Path, home: dict[str, str]) -> None:
    config = tmp_path / "swayhost.yaml"
    config.write_text("workers:\n  dummy:\n    environment: {inherit: true}\n", encoding="utf-8")
    cache = unwritable(tmp_path)
    env = {**home, "XDG_CACHE_HOME": str(cache), "SWAYHOST_CONFIG": str(config)}
    out = swayhost("env", "create", env=env)
    assert one_line_error(out, 3) == unwritable_message(cache / "sway-plugin-host" / "envs")


def test_env_create_without_a_config_file(home: dict[str, str]) -> None:
    path = Path(home["XDG_CONFIG_HOME"]) / "swayhost" / "config.yaml"
    out = swayhost("env", "create", env=home)
    assert one_line_error(out, 1) == (
        f"error: there is no host config file ({path} does not exist); create it with a worker"
        " section that declares `environment:`, or point SWAYHOST_CONFIG at one"
        " (README: Worker environments)"
    )


# -- worker serve --------------------------------------------------------------------


def test_serve_with_a_missing_token_file(tmp_path: Path, home: dict[str, str]) -> None:
    missing = tmp_path / "token"
    out = swayhost(
        "worker", "serve", "--listen", "127.0.0.1:0", "--kind", "dummy",
        "--token-file", str(missing), env=home,
    )  # fmt: skip
    assert one_line_error(out, 3) == (
        f"error: token file {str(missing)!r} does not exist; check the path"
        " (`swayhost certs init` writes a token file)"
    )


def test_serve_with_a_binary_token_file(tmp_path: Path, home: dict[str, str]) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe\x00binary")
    token.chmod(0o600)
    out = swayhost(
        "worker", "serve", "--listen", "127.0.0.1:0", "--kind", "dummy",
        "--token-file", str(token), env=home,
    )  # fmt: skip
    assert one_line_error(out, 3) == (
        f"error: token file {str(token)!r} cannot be read: it is not UTF-8 text; it must hold"
        " the token as one line of text (`swayhost certs init` writes one)"
    )


def test_serve_with_a_binary_config_file(tmp_path: Path, home: dict[str, str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    token = tmp_path / "token"
    token.write_text("a-token-of-sixteen-or-more-characters\n", encoding="utf-8")
    token.chmod(0o600)
    out = swayhost(
        "worker", "serve", "--listen", "127.0.0.1:0", "--kind", "dummy",
        "--token-file", str(token), env={**home, "SWAYHOST_CONFIG": str(config)},
    )  # fmt: skip
    assert one_line_error(out, 3) == (
        f"error: {config}: (file): is not UTF-8 text (byte 0x89 at offset 0); point"
        " SWAYHOST_CONFIG at the YAML config file, e.g. workers: {hf: {python:"
        " /envs/hf/bin/python, env: {HF_HOME: /data/hf}}}"
    )


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:65536"])
def test_serve_on_a_port_out_of_range(listen: str, home: dict[str, str]) -> None:
    out = swayhost(
        "worker", "serve", "--listen", listen, "--kind", "dummy", "--token-file", "t", env=home
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    port = int(listen.rpartition(":")[2])
    assert out.stderr.strip().splitlines()[-1] == (
        f"swayhost worker serve: error: argument --listen: {listen!r}: port {port} is out of"
        " range; use 1-65535 (or 0 for any free port)"
    )


def test_worker_told_to_listen_on_a_port_out_of_range() -> None:
    """The variable every Python worker reads, not just the CLI's flag."""
    from swayworker.remote import ListenError, listener_from_env

    with pytest.raises(ListenError) as info:
        listener_from_env({"SWAY_WORKER_LISTEN": "127.0.0.1:99999", "SWAY_WORKER_TOKEN": "x"})
    assert str(info.value) == (
        "SWAY_WORKER_LISTEN='127.0.0.1:99999': port 99999 is out of range; use 1-65535"
        " (or 0 for any free port)"
    )


# -- detached, conformance -------------------------------------------------------------


def test_stop_a_detached_worker_that_does_not_exist(home: dict[str, str]) -> None:
    out = swayhost("detached", "stop", "unknown-name", env=home)
    assert one_line_error(out, 1) == (
        "error: no detached worker is named 'unknown-name'; `swayhost detached list` shows them"
    )


def copy_node_worker_without_deps(root: Path) -> Path:
    """This repo's layout (Makefile + workers/node) with the Node worker's npm deps missing."""
    folder = root / "workers" / "node"
    shutil.copytree(NODE_WORKER, folder, ignore=shutil.ignore_patterns("node_modules"))
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    return folder / "worker.js"


@pytest.mark.parametrize("command", ["conformance", "describe"])
def test_node_worker_without_its_npm_deps(command: str, tmp_path: Path) -> None:
    worker = copy_node_worker_without_deps(tmp_path)
    out = swayhost(command, "--", "node", str(worker))
    folder = worker.parent
    assert one_line_error(out, 1) == (
        f"error: the Node worker {str(worker)!r} cannot start: its dependency '@grpc/grpc-js'"
        f" is not installed (no node_modules/@grpc/grpc-js under {folder}); run"
        f" `make node-worker` (or `npm ci` in {folder})"
    )


# -- output that is piped ------------------------------------------------------------------


def test_tables_wrap_long_values_instead_of_cutting_them(home: dict[str, str]) -> None:
    out = swayhost("describe", "--kind", "dummy", env={**home, "COLUMNS": "60"})
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    cells = "".join(ch for ch in out.stdout if not ch.isspace() and ch not in "│┃━─┏┓┗┛┡┩└┘┌┐╇┼")
    assert sys.executable in cells
