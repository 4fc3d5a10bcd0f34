"""What the benchmark scripts share (run as ``python benchmarks/<script>.py``): the paper's settings as the workflow
reads them, argument types, how a figure is judged against its target, the bytes of a batch, and the footer of wall
time and load."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
VARIANT_SCHEMA = REPO / "workflow" / "schemas" / "variant.schema.yaml"
COMCL_VARIANT = REPO / "config" / "pretrain" / "comcl.yaml"


def schema_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of a configuration section: the paper's values."""
    schema = yaml.safe_load(SCHEMA.read_text())
    return {key: spec.get("default") for key, spec in schema["properties"][section]["properties"].items()}


def read_variant(path: Path = COMCL_VARIANT) -> dict[str, Any]:
    """A pretraining variant as the workflow reads it: validated, the variant schema's defaults filled in."""
    variant = yaml.safe_load(path.read_text())
    validate(variant, str(VARIANT_SCHEMA))
    return variant


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
