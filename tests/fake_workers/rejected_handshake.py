"""A worker that makes its private socket folder, then prints a handshake line the host refuses.

The host kills it for the line, so it never removes the ``swayworker-*`` folder itself: the
host must remove the folder the line names. It refuses to run without the cookie, like a
real worker, so only the handshake is wrong.
"""

import os
import sys
import tempfile
import time

from swayworker.protocol import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE

if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
    sys.exit("rejected_handshake.py is a sway worker: start it through swayhost")
folder = tempfile.mkdtemp(prefix="swayworker-")
print(f"2|1|unix|{folder}/worker.sock|grpc", flush=True)
time.sleep(30)
