"""Paired comparisons: the fast replicate metrics against the scikit-learn ones (on the data once and repeated by
bootstrap counts), the bootstrap's behaviour (identical methods, a strictly better one, swapping, determinism, the
interval's width, a deterministic run broadcast over seeds), misaligned runs refused, and the two files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comcl.finetune.linear import START
from comcl.finetune.metrics import grading_metrics, multilabel_metrics
from comcl.io import write_table
from comcl.report.comparisons import COLUMNS, compare_all, compare_runs, paired_difference, replicate_metrics, write_comparisons

TOL = 1e-12


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _close(fast: float, slow: float | None) -> bool:
    return (math.isnan(fast) and slow is None) or (slow is not None and abs(fast - slow) <= TOL)


def _grading_case(rng: np.random.Generator, n: int, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    truth = rng.integers(0, classes, n)
    # Probabilities on a coarse grid, so that argmax ties (resolved to the lower class) occur.
    scores = rng.integers(0, 4, (n, classes)).astype(float) + 3.0 * np.eye(classes)[truth] * (rng.random(n) < 0.5)[:, None]
    return truth, scores / scores.sum(axis=1, keepdims=True).clip(min=1)


def _multilabel_case(rng: np.random.Generator, n: int, labels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    truth = (rng.random((n, labels)) < 0.4).astype(int)
    truth[:, -1] = 0  # one label without positives: AUROC undefined, left out of the mean
    scores = np.round(np.clip(0.3 * truth + rng.random((n, labels)) * 0.7, 0, 1), 1)  # ties, some exactly 0.5
    return truth, scores


def test_fast_grading_metrics_equal_sklearn_on_data_and_on_repeated_data() -> None:
    rng = np.random.default_rng(1)
    truth, scores = _grading_case(rng, 60)
    missing = truth.copy()
    missing[missing == 2] = 3  # a split missing grade 2
    constant = np.zeros(20, dtype=int), np.tile([0.9, 0.05, 0.05], (20, 1))  # one grade, predicted throughout
    for labels, probabilities in ((truth, scores), (missing, scores), constant):
        fast = replicate_metrics(labels, probabilities, "grading")
        slow = grading_metrics(labels, probabilities)
        for metric in ("kappa", "accuracy"):
            assert _close(fast[metric][0], slow[metric]), (metric, fast[metric][0], slow[metric])
    assert math.isnan(replicate_metrics(*constant, "grading")["kappa"][0])
    weights = rng.multinomial(60, np.full(60, 1 / 60), size=5)
    fast = replicate_metrics(truth, scores, "grading", weights=weights)
    for r, counts in enumerate(weights):
        slow = grading_metrics(np.repeat(truth, counts), np.repeat(scores, counts, axis=0))
        assert _close(fast["kappa"][r], slow["kappa"]) and _close(fast["accuracy"][r], slow["accuracy"])


def test_fast_multilabel_metrics_equal_sklearn_on_data_and_on_repeated_data() -> None:
    rng = np.random.default_rng(2)
    truth, scores = _multilabel_case(rng, 50)
    names = [f"l{j}" for j in range(truth.shape[1])]
    for threshold in (0.5, 0.3):
        fast = replicate_metrics(truth, scores, "multilabel", threshold=threshold)
        slow = multilabel_metrics(truth, scores, names, threshold=threshold)
        assert slow["undefined"]["auroc"] == ["l3"]
        for metric in ("kappa", "accuracy", "auroc"):
            assert _close(fast[metric][0], slow[metric]), (metric, fast[metric][0], slow[metric])
    nothing = np.zeros((10, 2), dtype=int), np.full((10, 2), 0.1)  # every kappa and AUROC undefined
    fast = replicate_metrics(*nothing, "multilabel")
    assert math.isnan(fast["kappa"][0]) and math.isnan(fast["auroc"][0]) and fast["accuracy"][0] == 1.0
    weights = rng.multinomial(50, np.full(50, 1 / 50), size=5)
    fast = replicate_metrics(truth, scores, "multilabel", weights=weights)
    for r, counts in enumerate(weights):
        slow = multilabel_metrics(np.repeat(truth, counts, axis=0), np.repeat(scores, counts, axis=0), names)
        for metric in ("kappa", "accuracy", "auroc"):
            assert _close(fast[metric][r], slow[metric]), (r, metric)


def test_identical_predictions_differ_by_exactly_zero() -> None:
    truth, scores = _grading_case(np.random.default_rng(3), 40)
    runs = {s: scores + 0.0 for s in (0, 1, 2)}
    result = paired_difference(truth, runs, {s: p.copy() for s, p in runs.items()}, "grading", "kappa", replicates=300)
    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
    assert result["seeds"] == 3 and result["images"] == 40 and result["replicates"] == 300


def _noisy(rng: np.random.Generator, truth: np.ndarray, right: float, classes: int = 5) -> np.ndarray:
    """Probabilities whose argmax is the truth on about a share ``right`` of the images, another grade elsewhere."""
    guess = np.where(rng.random(truth.size) < right, truth, (truth + rng.integers(1, classes, truth.size)) % classes)
    return 0.1 + 0.5 * np.eye(classes)[guess]


def test_swapping_the_methods_negates_the_difference_and_swaps_the_interval() -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 5, 80)
    ours = {s: _noisy(rng, truth, 0.8) for s in (0, 1, 2)}
    theirs = {s: _noisy(rng, truth, 0.6) for s in (0, 1, 2, 3)}  # seed 3 has no partner and is not used
    forward = paired_difference(truth, ours, theirs, "grading", "accuracy", replicates=400, seed=7)
    backward = paired_difference(truth, theirs, ours, "grading", "accuracy", replicates=400, seed=7)
    assert forward["seeds"] == 3
    assert forward["difference"] == pytest.approx(forward["ours"] - forward["theirs"], abs=TOL)
    assert backward["difference"] == pytest.approx(-forward["difference"], abs=TOL)
    assert backward["low"] == pytest.approx(-forward["high"], abs=TOL)
    assert backward["high"] == pytest.approx(-forward["low"], abs=TOL)
    expected = np.mean(
        [grading_metrics(truth, ours[s])["accuracy"] - grading_metrics(truth, theirs[s])["accuracy"] for s in (0, 1, 2)]
    )
    assert forward["difference"] == pytest.approx(expected, abs=TOL)
    assert forward["low"] <= forward["difference"] <= forward["high"]


def test_the_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 5, 60)
    ours, theirs = {0: _noisy(rng, truth, 0.7), 1: _noisy(rng, truth, 0.7)}, {0: _noisy(rng, truth, 0.6), 1: _noisy(rng, truth, 0.6)}  # fmt: skip
    first = paired_difference(truth, ours, theirs, "grading", "kappa", replicates=300, seed=11)
    assert paired_difference(truth, ours, theirs, "grading", "kappa", replicates=300, seed=11) == first
    other = paired_difference(truth, ours, theirs, "grading", "kappa", replicates=300, seed=12)
    assert other["difference"] == first["difference"] and (other["low"], other["high"]) != (first["low"], first["high"])


def test_the_interval_widens_with_fewer_images() -> None:
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 5, 400)
    ours, theirs = {0: _noisy(rng, truth, 0.75)}, {0: _noisy(rng, truth, 0.65)}
    wide = paired_difference(truth[:40], {0: ours[0][:40]}, {0: theirs[0][:40]}, "grading", "accuracy", replicates=500)
    narrow = paired_difference(truth, ours, theirs, "grading", "accuracy", replicates=500)
    assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"]) > 0


def test_no_common_seed_and_a_bad_metric_are_refused() -> None:
    truth, scores = _grading_case(np.random.default_rng(7), 10)
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference(truth, {0: scores}, {1: scores}, "grading", "kappa")
    with pytest.raises(ValueError, match="metric must be one of"):
        paired_difference(truth, {0: scores}, {0: scores}, "grading", "auroc")


def _predictions(runs: dict[tuple[str, int | None], np.ndarray], ids: list[str], **keys: str) -> pd.DataFrame:
    """The long frame of runs of one protocol, dataset and version: one row per run and image."""
    frames = []
    for (method, seed), scores in runs.items():
        frame = pd.DataFrame(scores, columns=[f"p_{k}" for k in range(scores.shape[1])])
        frame.insert(0, "image_id", ids)
        frames.append(frame.assign(method=method, seed=math.nan if seed is None else seed, **keys))
    return pd.concat(frames, ignore_index=True)


def _grading_setup(n: int = 50) -> tuple[np.ndarray, list[str], pd.DataFrame, dict[str, pd.DataFrame]]:
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 5, n)
    ids = [f"img{i:03d}" for i in range(n)]
    perfect = 0.1 + 0.5 * np.eye(5)[truth]
    runs = {("comcl", s): perfect for s in (0, 1, 2)}
    runs |= {("simclr", s): _noisy(rng, truth, 0.5) for s in (0, 1, 2)}
    runs[("frozen", None)] = _noisy(rng, truth, 0.6)
    frame = _predictions(runs, ids, protocol="fine-tuning", dataset="eyeq", version="original")
    return truth, ids, frame, {"runs": pd.DataFrame({"image_id": ids, "grade": truth})}


def test_compare_all_gives_a_better_method_higher_and_broadcasts_a_deterministic_run() -> None:
    truth, _, frame, truth_frames = _grading_setup()
    shuffled = frame.sample(frac=1.0, random_state=0)  # rows in any order: runs are aligned by image_id
    result = compare_all(shuffled, {("eyeq", "original"): ("grading", truth_frames["runs"])}, "comcl", replicates=300)
    assert list(result.columns) == list(COLUMNS)
    assert list(result[["method", "metric"]].itertuples(index=False, name=None)) == [
        (m, k) for m in pd.unique(shuffled["method"]) if m != "comcl" for k in ("kappa", "accuracy")
    ]
    simclr = result.set_index(["method", "metric"]).loc[("simclr", "accuracy")]
    assert simclr["low"] > 0 and simclr["verdict"] == "higher" and simclr["ours"] == 1.0 and simclr["seeds"] == 3
    frozen = result[result["method"] == "frozen"].set_index("metric")
    assert (frozen["seeds"] == 3).all() and (frozen["verdict"] == "higher").all()
    runs = frame.groupby(["method", "seed"], dropna=False)
    scores = {(m, None if pd.isna(s) else int(s)): g.filter(like="p_").to_numpy() for (m, s), g in runs}
    ours = {s: scores[("comcl", s)] for s in (0, 1, 2)}
    direct = paired_difference(truth, ours, {s: scores[("frozen", None)] for s in (0, 1, 2)}, "grading", "kappa", replicates=300)
    assert direct == {key: frozen.loc["kappa", key] for key in direct}
    assert paired_difference(truth, ours, {None: scores[("frozen", None)]}, "grading", "kappa", replicates=300) == direct


def test_compare_all_refuses_a_run_whose_image_ids_differ_naming_it() -> None:
    _, _, frame, truth_frames = _grading_setup()
    frame.loc[(frame["method"] == "simclr") & (frame["seed"] == 1) & (frame["image_id"] == "img007"), "image_id"] = "img999"
    with pytest.raises(ValueError, match=r"fine-tuning/eyeq/original/simclr seed 1: image ids differ.*img999"):
        compare_all(frame, {("eyeq", "original"): ("grading", truth_frames["runs"])}, "comcl", replicates=10)


def test_compare_all_multilabel_drops_unused_columns_and_matches_the_metrics() -> None:
    rng = np.random.default_rng(9)
    truth, _ = _multilabel_case(rng, 60, labels=3)
    ids = [f"x{i}" for i in range(60)]
    runs = {(m, s): np.round(np.clip(0.4 * truth + rng.random(truth.shape) * 0.6, 0, 1), 2) for m in ("comcl", "moco") for s in (0, 1)}  # fmt: skip
    chest = _predictions(runs, ids, protocol="linear", dataset="chest", version="lq")
    grades = _grading_setup()[2].assign(protocol="linear")
    frame = pd.concat([grades, chest], ignore_index=True)  # chest rows have p_3, p_4 all NaN: dropped for chest
    names = ["a", "b", "c"]
    labels = pd.DataFrame(truth, columns=names).assign(image_id=ids)[["image_id", "a", "b", "c"]]
    truth_map = {("chest", "lq"): ("multilabel", labels), ("eyeq", "original"): ("grading", _grading_setup()[3]["runs"])}
    result = compare_all(frame, truth_map, "comcl", replicates=200)
    rows = result[result["dataset"] == "chest"].set_index("metric")
    assert list(rows.index) == ["kappa", "accuracy", "auroc"] and (rows["method"] == "moco").all()
    for metric in rows.index:
        per_seed = [
            multilabel_metrics(truth, runs[("comcl", s)], names)[metric]
            - multilabel_metrics(truth, runs[("moco", s)], names)[metric]
            for s in (0, 1)
        ]
        assert rows.loc[metric, "difference"] == pytest.approx(np.mean(per_seed), abs=TOL)
        assert rows.loc[metric, "images"] == 60 and rows.loc[metric, "replicates"] <= 200


def test_the_files_show_signed_intervals_display_names_and_an_empty_comparison(tmp_path: Path) -> None:
    def row(method: str, version: str, metric: str, difference: float, low: float, high: float, verdict: str) -> dict:
        return dict(protocol="fine-tuning", dataset="eyeq", version=version, reference="comcl", method=method,
                    metric=metric, ours=0.8, theirs=0.8 - difference, difference=difference, low=low, high=high,
                    seeds=3, images=50, replicates=2000, verdict=verdict)  # fmt: skip

    frame = pd.DataFrame(
        [
            row("simclr", "original", "kappa", 0.0434, -0.0121, 0.1009, "no difference shown"),
            row("simclr", "original", "accuracy", 0.05, 0.02, 0.08, "higher"),
            row("simclr", "lq70", "kappa", -0.2, -0.3, -0.1, "lower"),
            row("simclr", "lq70", "accuracy", math.nan, math.nan, math.nan, "no difference shown"),
        ],
        columns=list(COLUMNS),
    )
    write_comparisons(frame, tmp_path / "c.csv", tmp_path / "c.md", labels={"comcl": "CoMCL"})
    text = (tmp_path / "c.md").read_text()
    assert text.startswith("# Paired comparisons\n") and "paired bootstrap over seeds and test images" in text
    assert "| original Kappa | original ACC | lq70 Kappa | lq70 ACC |" in text
    assert "| CoMCL − simclr | +0.043 [-0.012, +0.101] | **+0.050 [+0.020, +0.080]** | **-0.200 [-0.300, -0.100]** | n/d |" in text  # fmt: skip
    back = pd.read_csv(tmp_path / "c.csv")
    assert list(back.columns) == list(COLUMNS) and math.isnan(back.loc[3, "difference"]) and back.loc[0, "low"] == -0.0121
    _, _, predictions, truth_frames = _grading_setup()
    empty = compare_all(predictions, {("eyeq", "original"): ("grading", truth_frames["runs"])}, "mocov3")
    assert empty.empty and list(empty.columns) == list(COLUMNS)
    write_comparisons(empty, tmp_path / "e.csv", tmp_path / "e.md", labels={"mocov3": "MoCo v3"})
    assert "No comparison could be made: the reference method MoCo v3 did not run" in (tmp_path / "e.md").read_text()


def test_the_workflows_runs_are_compared_under_both_protocols_from_their_files(tmp_path: Path) -> None:
    """Fine-tuning files (one run each) and a linear evaluation's file (every encoder, the start once per seed)."""
    rng = np.random.default_rng(3)
    grades = rng.integers(0, 5, 40)
    ids = [f"{i}_left" for i in range(40)]
    index = pd.DataFrame({"image_id": ids, "split": "test", "dr_grade": grades})
    index = pd.concat([index, index.assign(image_id=[f"t{i}" for i in range(40)], split="train")], ignore_index=True)
    write_table(tmp_path / "index.parquet", index, {"task": "grading", "label_columns": ["dr_grade"]})

    def probabilities(right: float) -> pd.DataFrame:
        hit = rng.random(40) < right
        guess = np.where(hit, grades, rng.integers(0, 5, 40))
        return pd.DataFrame(np.eye(5)[guess], columns=[f"p_{k}" for k in range(5)]).assign(image_id=ids)

    finetuned, linear_rows = [], []
    for seed in (0, 1):
        for method, right in (("comcl", 0.9), ("resnet18", 0.3)):
            path = tmp_path / f"{method}{seed}.parquet"
            write_table(path, probabilities(right)[::-1], {"task": "grading"})  # another order than the index's
            finetuned.append({"dataset": "eyeq", "version": "lq70", "method": method, "seed": seed, "predictions": str(path)})
        linear_rows.append(probabilities(0.2).assign(method=START, seed=seed))
    linear_rows.append(probabilities(0.8).assign(method="comcl", seed=None))
    linear = pd.concat(linear_rows, ignore_index=True).astype({"seed": "Int64"})
    write_table(tmp_path / "linear.parquet", linear, {"task": "grading"})
    frame = compare_runs(
        finetuned,
        [{"dataset": "eyeq", "version": "lq70", "predictions": str(tmp_path / "linear.parquet")}],
        [{"dataset": "eyeq", "version": "lq70", "index": str(tmp_path / "index.parquet")}],
        {"reference": "comcl", "replicates": 200, "seed": 0, "threshold": 0.5, "init": "scratch"},
        {"comcl": "CoMCL"},
        tmp_path / "c.csv",
        tmp_path / "c.md",
    )
    kappa = frame[frame["metric"] == "kappa"].set_index(["protocol", "method"])
    assert set(kappa.index) == {("fine-tuning", "resnet18"), ("linear evaluation", START)}
    assert (kappa["verdict"] == "higher").all() and (kappa["images"] == 40).all()
    assert kappa.loc[("linear evaluation", START), "seeds"] == 2
    assert "CoMCL − Random weights" in (tmp_path / "c.md").read_text()
