"""What the benchmark scripts share (run as ``python benchmarks/<script>.py``): argument types, how a figure is
judged against its target, the bytes of a batch, and the footer of wall time and load."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from typing import Any


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def judged(value: float, target: float, at_most: bool = False) -> str:
    """PASS or FAIL of ``value`` against ``target``, a lower bound (an upper one ``at_most``)."""
    return "PASS" if (value <= target if at_most else value >= target) else "FAIL"


def verdict(ratio: float, target: float) -> str:
    """A ratio against its lower bound, as the benchmarks print it."""
    return f"{ratio:.2f} (target >= {target:g}: {judged(ratio, target)})"


def print_footer(wall_start: float, included: str, load_before: float, threads: int) -> None:
    """The wall time since ``wall_start`` (``time.perf_counter``) and the load average before and now: above the
    threads used, other processes shared the CPUs and the timings are not clean."""
    load = os.getloadavg()[0]
    print(f"wall time {time.perf_counter() - wall_start:.1f} s ({included} included)")
    print(
        f"1-minute load average: {load_before:.2f} before, {load:.2f} after"
        + (
            f" (more than the {threads} threads used: other processes shared the CPUs, timings are not clean)"
            if max(load_before, load) > threads + 0.5
            else ""
        )
    )


def item_bytes(item: Any) -> int:
    """Bytes of every array or tensor in a (nested) mapping, such as a loader's batch."""
    if isinstance(item, Mapping):
        return sum(item_bytes(value) for value in item.values())
    return int(item.nbytes)
