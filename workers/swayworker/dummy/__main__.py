"""``python -m swayworker.dummy``: the deterministic toy worker used by tests."""

from swayworker.dummy import load_dummy
from swayworker.server import serve

if __name__ == "__main__":
    serve(loader=load_dummy, worker_kind="dummy")
