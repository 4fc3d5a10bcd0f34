"""Fine-tuning figures from metrics files, and the per-stage benchmark summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from comcl.errors import DataError
from comcl.finetune.figures import read_results, run_finetune_figures
from comcl.report.benchmarks import read_benchmarks, run_benchmark_summary

HISTORY = [
    {"epoch": 1, "loss": 1.6, "val_kappa": None, "val_accuracy": 0.2},
    {"epoch": 2, "loss": 1.2, "val_kappa": 0.4, "val_accuracy": 0.5},
]


def metrics_file(path: Path, task: str, kappa: float | None) -> Path:
    if task == "grading":
        per_class = {str(k): {"precision": None, "recall": 0.5, "support": 3} for k in range(3)}
        test = {"kappa": kappa, "accuracy": 0.5, "per_class": per_class, "confusion": [[3, 1, 0], [1, 2, 0], [0, 0, 0]]}
    else:
        per_label = {
            name: {"kappa": kappa, "accuracy": 0.9, "auroc": None if name == "Mass" else 0.7, "support": 2}
            for name in ("Effusion", "Mass")
        }
        test = {"kappa": kappa, "accuracy": 0.9, "auroc": 0.7, "per_label": per_label}
    document = {
        "task": task,
        "init": "scratch",
        "sizes": {"train": 9, "val": 2, "test": 5},
        "best_epoch": 2,
        "history": HISTORY,
        "test": test,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("task", ["grading", "multilabel"])
def test_curves_and_outcomes_are_drawn_with_undefined_values(task, tmp_path):
    runs = {
        "CoMCL": [metrics_file(tmp_path / f"comcl{seed}.json", task, 0.3) for seed in (0, 1)],
        "resnet18": [metrics_file(tmp_path / "r18.json", task, None)],
    }
    run_finetune_figures(runs, "eyeq, original", tmp_path / "curves.png", tmp_path / "outcomes.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and (tmp_path / "outcomes.png").stat().st_size > 10_000


def test_confusion_counts_are_summed_over_seeds(tmp_path):
    results = read_results({"CoMCL": [metrics_file(tmp_path / f"{seed}.json", "grading", 0.1) for seed in (0, 1)]})
    assert [run["test"]["confusion"][0][0] for run in results["CoMCL"]] == [3, 3]


def test_a_metrics_file_without_history_is_refused_by_name(tmp_path):
    bad = tmp_path / "metrics.json"
    document = json.loads(metrics_file(tmp_path / "good.json", "grading", 0.1).read_text())
    del document["history"]
    bad.write_text(json.dumps(document))
    with pytest.raises(DataError, match="no 'best_epoch' and 'history'") as error:
        read_results({"CoMCL": [bad]})
    assert str(bad) in str(error.value)


def test_the_benchmark_summary_totals_each_stage(tmp_path):
    folder = tmp_path / "benchmarks"
    for stage, job, seconds, rss in (("finetune", "a", 10.0, 500.0), ("finetune", "b", 30.0, 700.0), ("index", "x", 1.5, "NA")):
        (folder / stage).mkdir(parents=True, exist_ok=True)
        header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
        (folder / stage / f"{job}.tsv").write_text(f"{header}\n{seconds}\t0:00:10\t{rss}\t0\t0\t0\t0\t0\t0\t0\n")
    summary = run_benchmark_summary(folder, tmp_path / "benchmarks.csv", tmp_path / "benchmarks.png")
    assert summary.to_dict("records")[0] == {
        "stage": "finetune",
        "jobs": 2,
        "total_seconds": 40.0,
        "longest_seconds": 30.0,
        "peak_rss_mb": 700.0,
    }
    assert pd.isna(summary.set_index("stage").loc["index", "peak_rss_mb"])
    assert (tmp_path / "benchmarks.png").stat().st_size > 5_000


def test_an_empty_benchmark_folder_says_to_run_the_workflow(tmp_path):
    with pytest.raises(DataError, match="no benchmark files"):
        read_benchmarks(tmp_path)
