"""A worker that hangs before its handshake."""

import sys
import time

sys.stderr.write("loading something very slow...\n")
sys.stderr.flush()
time.sleep(60)
