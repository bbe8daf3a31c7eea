"""``python -m swayworker.custom``: serve a user's backend class out of process."""

from swayworker.custom import load_custom
from swayworker.server import serve

if __name__ == "__main__":
    serve(loader=load_custom, worker_kind="custom")
