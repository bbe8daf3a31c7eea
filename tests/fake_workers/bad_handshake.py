"""A worker that prints a handshake line the host must reject."""

import sys
import time

print("hello, I am not a handshake", flush=True)
time.sleep(30)
sys.exit(0)
