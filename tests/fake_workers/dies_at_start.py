"""A worker that crashes before its handshake."""

import sys

sys.stderr.write("ImportError: no module named 'imaginary_framework'\n")
sys.exit(3)
