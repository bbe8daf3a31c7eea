"""``python -m swayworker.api``: the OpenAI-compatible completions worker."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from swayplugin.v1 import backend_pb2 as pb

from swayworker.custom import spec_validation_error
from swayworker.server import serve

T = TypeVar("T", int, float)


def load_api(msg: pb.ModelSpec) -> Any:
    """Build the API backend for a Load request (probing the server's capabilities)."""
    if not msg.endpoint:
        raise spec_validation_error(
            "api backend requires `endpoint:` on the ModelSpec "
            "(the base URL of the /v1/completions server)"
        )
    try:
        from swayworker.api.backend import ApiBackend, api_key_from_env
        from swayworker.api.client import CompletionsClient
    except ImportError as exc:
        raise ImportError(
            f"the api backend needs httpx ({exc}); pip install 'sway-plugin-host[api]'"
        ) from exc
    options = msg.options
    client = CompletionsClient(
        msg.endpoint,
        api_key=api_key_from_env(),
        timeout_s=_option(options, "timeout_s", float, 60.0),
        max_retries=_option(options, "max_retries", int, 3),
        backoff_s=_option(options, "retry_backoff_s", float, 0.5),
    )
    try:
        return ApiBackend(
            client,
            model=msg.base,
            endpoint=msg.endpoint,
            vocab_size=_option(options, "vocab_size", int, 0),
            max_top_k=_option(options, "max_top_k", int, 0),
            max_prompt_tokens=_option(options, "max_prompt_tokens", int, 0),
            extra_body=_extra_body(options.get("extra_body", "{}")),
        )
    except BaseException:
        client.close()
        raise


def _option(options: Mapping[str, str], key: str, kind: Callable[[str], T], default: T) -> T:
    if key not in options:
        return default
    try:
        return kind(options[key])
    except ValueError:
        raise spec_validation_error(
            f"api worker option {key}={options[key]!r} is not a valid {kind.__name__}"
        ) from None


def _extra_body(text: str) -> dict[str, Any]:
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise spec_validation_error(f"api worker option extra_body is not JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise spec_validation_error("api worker option extra_body must be a JSON object")
    return extra


if __name__ == "__main__":
    serve(loader=load_api, worker_kind="api")
