"""A worker that speaks a contract version the host does not."""

import time

print("1|99|unix|/tmp/nowhere.sock|grpc", flush=True)
time.sleep(30)
