"""The API worker (``python -m swayworker.api``): an OpenAI-compatible completions server.

The key comes from ``SWAY_API_KEY``, else ``OPENAI_API_KEY`` (the worker's
environment; it is never logged). Spec options (``WorkerOptions(options=...)``):

``vocab_size``       the model's vocabulary size, so ``next_token_dist`` can
                     report the tail mass (0: unknown, tail None, as in sway)
``max_top_k``        the server's cap on alternatives, skipping the probe
``timeout_s``        per-request timeout (default 60)
``max_retries``      retries on 5xx / connection errors (default 3)
``retry_backoff_s``  first backoff, doubled per retry (default 0.5)
``extra_body``       a JSON object of server-specific fields sent with every
                     request, e.g. ``{"repeat_penalty": 1.0}`` for llama.cpp,
                     whose default 1.1 makes "greedy" differ from argmax
"""
