"""Waiting on a condition with a deadline, for the Python tests and
benchmarks (tests/web, tests/bench): the one place that polls."""
import time


def wait_until(pred, timeout_s, interval_s=0.05):
    """Polls pred() every interval_s until it holds or timeout_s passes;
    True if it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
