"""Shared by the benchmark scripts."""
import time


def wait_until(pred, timeout_s, interval_s=0.05):
    """Polls pred() until it holds or timeout_s passes; True if it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
