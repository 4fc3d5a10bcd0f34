"""Per-stage cost of a workflow run, from the benchmark file Snakemake writes for every job.

Where the time and memory of a run go is the first question before scaling it up (a cluster
profile's runtime and mem_mb per rule) or down (the demo's sizes). Each file holds one job:
seconds of wall time and peak resident memory (max_rss, MB).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from comcl.errors import DataError
from comcl.io import atomic_path, save_figure


def read_benchmarks(folder: str | Path) -> pd.DataFrame:
    """One row per job: stage (the rule: the file's folder), job (the file's name), seconds, max_rss (MB, None if unmeasured)."""
    rows = []
    for path in sorted(Path(folder).glob("*/*.tsv")):
        try:
            last = pd.read_csv(path, sep="\t").iloc[-1]
            seconds, rss = float(last["s"]), pd.to_numeric(last["max_rss"], errors="coerce")
        except (OSError, ValueError, KeyError, IndexError, pd.errors.ParserError) as error:
            raise DataError(
                f"not a Snakemake benchmark file: {error}", path=path, hint="delete it; the job rewrites it"
            ) from error
        rows.append(
            {"stage": path.parent.name, "job": path.stem, "seconds": seconds, "max_rss": None if pd.isna(rss) else float(rss)}
        )
    if not rows:
        raise DataError("no benchmark files", path=folder, hint="run the workflow first: every rule writes one")
    return pd.DataFrame(rows)


def summarize_benchmarks(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per stage: jobs, total and longest wall time (s), peak memory (MB); the costliest stage first."""
    summary = jobs.groupby("stage").agg(
        jobs=("job", "size"), total_seconds=("seconds", "sum"), longest_seconds=("seconds", "max"), peak_rss_mb=("max_rss", "max")
    )
    return summary.sort_values("total_seconds", ascending=False).reset_index().round(2)


def draw_benchmarks(summary: pd.DataFrame, path: str | Path) -> None:
    """Total wall time and peak memory per stage, as horizontal bars."""
    fig = Figure(figsize=(10, 0.35 * len(summary) + 1.4))
    time_axis, memory_axis = fig.subplots(1, 2, sharey=True)
    stages = summary.iloc[::-1]
    time_axis.barh(stages["stage"], stages["total_seconds"], color="#4c72b0")
    time_axis.set_xlabel(f"wall time, all jobs (s); run total {summary['total_seconds'].sum():.0f} s")
    memory_axis.barh(stages["stage"], stages["peak_rss_mb"].fillna(0), color="#dd8452")
    memory_axis.set_xlabel("peak resident memory of one job (MB)")
    for axis in (time_axis, memory_axis):
        axis.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def run_benchmark_summary(folder: str | Path, table: str | Path, figure: str | Path) -> pd.DataFrame:
    summary = summarize_benchmarks(read_benchmarks(folder))
    with atomic_path(table) as tmp:
        summary.to_csv(tmp, index=False)
    draw_benchmarks(summary, figure)
    return summary
