"""A host process: spawns a dummy worker, prints its pid, then waits to be killed."""

import sys
import time

import swayhost

backend = swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy"))
with backend.as_base() as view:
    view.logprob_of("a b", " c")
print(backend.pid, backend.description.model.cache_identity, flush=True)
sys.stdout.write(
    str(__import__("os").path.dirname(backend._conn.endpoint.handshake.address)) + "\n"
)
sys.stdout.flush()
time.sleep(120)
