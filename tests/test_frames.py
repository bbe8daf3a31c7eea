"""The local framed path: Score and ScoreBatch over a plain Unix socket beside gRPC.

Negotiated in the handshake (a host asks with ``SWAY_PLUGIN_FRAMES=1``; a
worker that can offers ``frames:PATH`` as a sixth field). These tests pin
down that it is used where it should be, that it changes no result and no
error (bit for bit, same exception type, words and attributes), that a worker
dying under a framed call is recovered like one dying under gRPC, and that
gRPC stays the path for workers that do not offer it.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import swayhost
from dlm_sway.core.errors import ProbeError
from swayhost import ModelSpec, WorkerOptions
from swayhost.policy import RecoveryPolicy
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, Request, ViewKey, request_to_proto
from swayworker.frames import FramesServer, read_frame, write_frame
from swayworker.hf.tiny import TinyModel
from swayworker.protocol import FRAMES_ENV, Handshake, HandshakeError, parse_handshake
from swayworker.servicer import BackendServicer

from tests.helpers import FAST_RECOVERY, same_result
from tests.test_model_thread import _ThreadLog

GRPC_ONLY = {FRAMES_ENV: "0"}


def test_handshake_carries_the_framed_path_as_an_optional_sixth_field() -> None:
    five = "1|1|unix|/tmp/w/worker.sock|grpc"
    assert parse_handshake(five).frames == ""
    six = parse_handshake(five + "|frames:/tmp/w/frames.sock")
    assert six.frames == "/tmp/w/frames.sock"
    assert six.format() == five + "|frames:/tmp/w/frames.sock"
    assert Handshake(1, 1, "unix", "/tmp/w/worker.sock").format() == five
    for bad in ("frames:relative.sock", "shm:/dev/shm/x", "frames:"):
        with pytest.raises(HandshakeError, match="6th field must be 'frames:'"):
            parse_handshake(f"{five}|{bad}")
    with pytest.raises(HandshakeError, match="5 fields"):
        parse_handshake(five + "|frames:/a|extra")


def _dummy(env: dict[str, str] | None = None, **policy: float) -> swayhost.RemoteBackend:
    options = WorkerOptions(
        env=env or {}, cache_bytes=0, recovery=RecoveryPolicy(**policy) if policy else FAST_RECOVERY
    )
    return swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))


def test_a_local_python_worker_scores_over_frames_unless_told_not_to() -> None:
    with _dummy() as framed, _dummy(GRPC_ONLY) as plain:
        assert framed.transport == "frames"
        assert plain.transport == "grpc"
        with framed.as_finetuned() as a, plain.as_finetuned() as b:
            assert a.logprob_of("The sky is", " blue") == b.logprob_of("The sky is", " blue")
            assert [x.logprobs.tobytes() for x in a.rolling_logprob_many(["a b", "c d e"])] == [
                x.logprobs.tobytes() for x in b.rolling_logprob_many(["a b", "c d e"])
            ]


def test_errors_over_frames_are_the_errors_over_grpc() -> None:
    """Same type, same words, same attributes, for a unary call and a batch item."""
    with _dummy() as framed, _dummy(GRPC_ONLY) as plain:
        seen = []
        for backend in (framed, plain):
            with backend.as_base() as view:
                with pytest.raises(ProbeError) as unary:
                    view.logprob_of("hello", "")
                with pytest.raises(ValueError) as top_k:
                    view.next_token_dist("hello", top_k=0)
                (item,) = view.logprob_of_many([("hello", "")], return_exceptions=True)
            assert isinstance(item, ProbeError)
            seen.append(
                (
                    type(unary.value),
                    str(unary.value),
                    unary.value.probe,
                    type(top_k.value),
                    str(top_k.value),
                    type(item),
                    str(item),
                )
            )
        assert seen[0] == seen[1]


def test_a_worker_killed_under_frames_is_restarted_and_the_call_retried() -> None:
    with _dummy() as backend, backend.as_finetuned() as view:
        want = view.logprob_of("The sky is", " blue")
        first = backend.pid
        os.kill(first, signal.SIGKILL)
        assert view.logprob_of("The sky is", " blue") == want
        assert backend.pid != first
        assert backend.transport == "frames"
        assert backend.stats().restarts == 1


@pytest.fixture(scope="module")
def hf_pair(tiny_model: TinyModel) -> Iterator[tuple[swayhost.RemoteBackend, ...]]:
    """The tiny HF model behind two workers, one over frames and one over gRPC only."""

    def spec(env: dict[str, str]) -> ModelSpec:
        return ModelSpec(
            kind="hf",
            base=str(tiny_model.base_dir),
            adapter=Path(tiny_model.adapter_dir),
            dtype="fp32",
            device="cpu",
            worker=WorkerOptions(env=env, cache_bytes=0),
        )

    with ExitStack() as stack:
        framed = stack.enter_context(swayhost.build(spec({})))
        plain = stack.enter_context(swayhost.build(spec(GRPC_ONLY)))
        yield framed, plain


@pytest.mark.slow
def test_hf_results_over_frames_equal_grpc_bit_for_bit(
    hf_pair: tuple[swayhost.RemoteBackend, ...],
) -> None:
    framed, plain = hf_pair
    assert (framed.transport, plain.transport) == ("frames", "grpc")
    vocab = int(framed.description.model.vocab_size)
    texts = ["The river ran", "In the town the baker sold warm bread", "A"]
    for enter in ("as_base", "as_finetuned"):
        with getattr(framed, enter)() as a, getattr(plain, enter)() as b:
            for text in texts:
                assert same_result(a.rolling_logprob(text), b.rolling_logprob(text))
                assert same_result(
                    a.next_token_dist(text, top_k=vocab), b.next_token_dist(text, top_k=vocab)
                )
                assert a.logprob_of(text, " and on") == b.logprob_of(text, " and on")
                assert a.generate(text, max_new_tokens=4) == b.generate(text, max_new_tokens=4)
            many_a = a.next_token_dist_many(texts, top_k=16)
            many_b = b.next_token_dist_many(texts, top_k=16)
            assert all(same_result(x, y) for x, y in zip(many_a, many_b, strict=True))
    with framed.as_scaled_adapter(0.5) as a, plain.as_scaled_adapter(0.5) as b:
        assert a.logprob_of("The river", " ran") == b.logprob_of("The river", " ran")
    with framed.as_null_adapter(3) as a, plain.as_null_adapter(3) as b:
        assert same_result(a.rolling_logprob(texts[1]), b.rolling_logprob(texts[1]))


def test_a_host_hanging_up_mid_call_leaves_the_framed_path_serving(tmp_path: Path) -> None:
    """Replies are written from the model thread; a connection gone before its reply costs nothing.

    One client sends a call and hangs up at once, while the model thread is
    still busy; eight others then score over their own connections and all
    get their answers, in order, from the one model thread.
    """
    backend = _ThreadLog()
    servicer = BackendServicer(
        backend=backend, loader=None, worker_kind="t", on_shutdown=lambda: None
    )
    server = FramesServer(
        tmp_path / "frames.sock", servicer.score, servicer.score_batch, servicer.run_framed
    )
    call = pb.FrameCall(score=request_to_proto(Request(ViewKey.ft(), LogprobOf("a", " b"))))
    gate = threading.Event()
    servicer.run_framed(lambda: gate.wait(10))  # hold the model thread
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        gone.connect(str(server.path))
        write_frame(gone, call.SerializeToString())
    gate.set()

    def client(_: int) -> list[float]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(server.path))
            answers = []
            for _ in range(10):
                write_frame(sock, call.SerializeToString())
                answers.append(pb.FrameReply.FromString(read_frame(sock)).score.logprob)
            return answers

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    server.close()
    servicer.close()
    assert results == [[-1.0] * 10] * 8
    assert len(backend.threads) == 1
