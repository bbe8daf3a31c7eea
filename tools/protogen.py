"""Regenerate the Python stubs of the contract (``make proto``).

The contract in ``proto/`` is the single source of truth; the stubs under
``workers/swayplugin`` are derived from it. ``generate(out_dir)`` is also
used by the staleness test, which regenerates into a temporary folder and
compares the bytes with what is committed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = ["swayplugin/v1/backend.proto"]
STUB_ROOT = ROOT / "workers"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (with mypy-protobuf) into ``out_dir``; return the files written."""
    include = Path(protoc.__file__).parent / "_proto"
    scripts = Path(sys.executable).parent  # mypy-protobuf's plugins live beside python
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    written = sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))
    for package_dir in {p.parent for p in written} | {p.parent.parent for p in written}:
        (package_dir / "__init__.py").touch()
    return written


def main() -> None:
    """Regenerate into a scratch folder, then move the stubs into place."""
    with tempfile.TemporaryDirectory() as scratch:
        files = generate(Path(scratch))
        for path in files:
            target = STUB_ROOT / path.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            print(f"wrote {target.relative_to(ROOT)}")
    for package_dir in (STUB_ROOT / "swayplugin", STUB_ROOT / "swayplugin" / "v1"):
        (package_dir / "__init__.py").touch()


if __name__ == "__main__":
    sys.exit(main())
