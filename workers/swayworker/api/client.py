"""POST ``/v1/completions`` with retries, and errors that never carry the API key.

Retries are for failures that a second try can fix: 5xx answers and
transport errors (refused connection, reset, timeout), with exponential
backoff. A 4xx is the server saying no to this request (a bad parameter, a
wrong key, an unknown model); repeating it cannot help, and the capability
probe relies on getting that answer at once.

The key travels only in the ``Authorization`` header. It is never logged,
and every message built here is scrubbed of it, even a server's error body
that echoes the request's headers back.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

log = logging.getLogger("swayworker")

MAX_BACKOFF_S = 8.0
BODY_EXCERPT = 300


class ApiError(Exception):
    """The server could not be reached, failed, or refused the request."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def rejected(self) -> bool:
        """A 4xx (or a 2xx without JSON): the server answered, and no retry changes that."""
        return self.status is not None and self.status < 500


def completions_url(endpoint: str) -> str:
    """The completions URL for a server root (``.../v1`` is accepted too)."""
    root = endpoint.rstrip("/")
    return f"{root}/completions" if root.endswith("/v1") else f"{root}/v1/completions"


class CompletionsClient:
    """One HTTP client for one server's ``/v1/completions``."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.url = completions_url(endpoint)
        self._secret = api_key or ""
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)
        self._max_retries = max_retries
        self._backoff_s = backoff_s

    def complete(self, payload: dict[str, Any]) -> Any:
        """The decoded JSON answer to ``payload``, retrying what a retry can fix."""
        attempts = self._max_retries + 1
        for attempt in range(attempts):
            try:
                return self._once(payload)
            except ApiError as exc:
                if exc.rejected or attempt == attempts - 1:
                    raise
                delay = min(MAX_BACKOFF_S, self._backoff_s * 2**attempt)
                log.warning("%s; retry %d/%d in %.1fs", exc, attempt + 1, attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self._http.close()

    def _once(self, payload: dict[str, Any]) -> Any:
        try:
            response = self._http.post(self.url, content=json.dumps(payload))
        except httpx.TransportError as exc:
            message = f"cannot reach {self.url}: {type(exc).__name__}: {exc}"
            raise ApiError(self._scrub(message)) from None
        if response.status_code >= 400:
            raise ApiError(
                self._scrub(
                    f"{self.url} answered HTTP {response.status_code}: "
                    f"{response.text[:BODY_EXCERPT]!r}"
                ),
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                self._scrub(f"{self.url} answered non-JSON: {response.text[:BODY_EXCERPT]!r}"),
                status=response.status_code,
            ) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text
