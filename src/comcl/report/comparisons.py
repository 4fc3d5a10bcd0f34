"""Paired comparisons of methods: the reference method (CoMCL) against each baseline and ablation, as the mean
difference of a metric over the same seeds and the same test images, with a 95 % paired-bootstrap interval.

The tables show mean ± std per method, which ignores that every method is fine-tuned with the same seeds and tested
on the same images: most of the spread over seeds is shared, and two overlapping ± bands can still hide a difference
that holds on every seed. Pairing keeps that: each bootstrap replicate draws the seeds and the test images once and
applies the same draw to both methods.

Thousands of replicates times dozens of comparisons rule out scikit-learn per replicate. A replicate of N images is
a count vector w (how often each image was drawn), so every metric becomes a weighted sum: confusion counts are one
matrix product, AUROC a weighted Mann-Whitney statistic over the images sorted once. On the data taken once (w = 1)
the metrics equal :mod:`comcl.finetune.metrics`, undefined ones being NaN here rather than None; on a replicate they
equal those metrics on the data with each image repeated w times.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

from comcl.finetune.linear import START
from comcl.finetune.results import TASK_METRICS
from comcl.io import atomic_path, read_table, write_text
from comcl.report.linear_eval import START_LABELS

COLUMNS = (
    "protocol", "dataset", "version", "reference", "method", "metric", "ours", "theirs", "difference", "low", "high",
    "seeds", "images", "replicates", "verdict",
)  # fmt: skip
RUN_KEYS = ("protocol", "dataset", "version", "method", "seed", "image_id")
HIGHER, LOWER, NO_DIFFERENCE = "higher", "lower", "no difference shown"
METRIC_LABELS = {"kappa": "Kappa", "accuracy": "ACC", "auroc": "AUC"}  # as published.yaml names them in the tables
MISSING, UNDEFINED = "–", "n/d"
LEVEL = 95.0
# Replicates are drawn in chunks of about this many image weights (float64), so a large test set bounds the memory
# (EyePACS' 53k test images x 2000 replicates would be 850 MB at once) without changing the draws' stream order.
CHUNK_CELLS = 2_000_000


# --- fast metrics over replicates -------------------------------------------------------------------------------


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` where the denominator is positive, NaN (undefined) elsewhere, without warnings."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _kappa(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Cohen's kappa as scikit-learn computes it, 1 - weighted observed / weighted chance disagreement. The chance
    disagreement is a sum of non-negative count products, so "undefined" is an exact zero."""
    return 1.0 - _divide(observed, expected)


def _mean_defined(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the defined (non-NaN) values, NaN where none is: a label whose metric is
    undefined is left out of the mean, as in :func:`comcl.finetune.metrics.multilabel_metrics`."""
    defined = ~np.isnan(values)
    return _divide(np.where(defined, values, 0.0).sum(axis=-1), defined.sum(axis=-1).astype(np.float64))


def _grading(truth: np.ndarray, probabilities: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    classes = probabilities.shape[1]
    pairs = truth * classes + probabilities.argmax(axis=1)  # argmax: the lower class on a tie, as the metrics
    indicator = np.zeros((truth.size, classes * classes))
    indicator[np.arange(truth.size), pairs] = 1.0
    confusion = (weights @ indicator).reshape(-1, classes, classes)  # rows the truth
    total = confusion.sum(axis=(1, 2))
    grid = np.arange(classes, dtype=np.float64)
    quadratic = (grid[:, None] - grid[None, :]) ** 2  # over the class indices, so a missing grade still weighs
    observed = np.einsum("rij,ij->r", confusion, quadratic)
    expected = np.einsum("ri,ij,rj->r", confusion.sum(axis=2), quadratic, confusion.sum(axis=1)) / total
    return {"kappa": _kappa(observed, expected), "accuracy": np.trace(confusion, axis1=1, axis2=2) / total}


def _auroc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUROC of one label per replicate: the weight of (positive, negative) pairs ranked
    right, ties counting one half, over the weight of all such pairs. The images are sorted once; a positive at
    sorted position k, in the tie group [a, b), beats the negatives before a and ties with those in [a, b), so its
    share is the mean of the cumulative negative weight at a and at b."""
    order = np.argsort(scores, kind="stable")
    ranked, label = scores[order], positive[order]
    starts_group = np.r_[True, ranked[1:] != ranked[:-1]]
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], ranked.size]
    group = np.cumsum(starts_group) - 1
    negatives_before = np.r_[0, np.cumsum(~label)]  # negatives at sorted positions below an index
    at_positive = np.flatnonzero(label)
    below = negatives_before[starts[group[at_positive]]]
    through = negatives_before[ends[group[at_positive]]]
    cumulative = np.zeros((weights.shape[0], int((~label).sum()) + 1))
    np.cumsum(weights[:, order[~label]], axis=1, out=cumulative[:, 1:])
    drawn_positive = weights[:, order[at_positive]]
    wins = 0.5 * (drawn_positive * (cumulative[:, below] + cumulative[:, through])).sum(axis=1)
    return _divide(wins, drawn_positive.sum(axis=1) * cumulative[:, -1])


def _multilabel(truth: np.ndarray, probabilities: np.ndarray, weights: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    positive = truth.astype(bool)
    predicted = probabilities >= threshold
    columns = np.concatenate([positive & predicted, ~positive & predicted, positive & ~predicted, positive], axis=1)
    counts = weights @ columns.astype(np.float64)
    hit, false_alarm, miss, present = np.split(counts, 4, axis=1)  # each (R, L)
    total = weights.sum(axis=1, keepdims=True)
    said = hit + false_alarm
    expected = (said * (total - present) + (total - said) * present) / total
    kappa = _kappa(false_alarm + miss, expected)
    accuracy = (total - false_alarm - miss) / total
    auroc = np.stack([_auroc(positive[:, j], probabilities[:, j], weights) for j in range(truth.shape[1])], axis=1)
    return {"kappa": _mean_defined(kappa), "accuracy": accuracy.mean(axis=1), "auroc": _mean_defined(auroc)}


def _checked(truth: np.ndarray, probabilities: np.ndarray, task: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The pair as int64 labels and finite float64 probabilities of matching shapes, refused with one message per
    mistake as :mod:`comcl.finetune.metrics` does (float labels, labels outside the classes, NaN scores)."""
    if task not in TASK_METRICS:
        raise ValueError(f"task must be one of {', '.join(TASK_METRICS)}, got {task!r}")
    labels, scores = np.asarray(truth), np.asarray(probabilities, dtype=np.float64)
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"truth must hold integer labels, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"probabilities must be (N, C) with N = {labels.shape[0]} test images, got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("probabilities contain NaN or infinite values")
    if task == "grading":
        if labels.ndim != 1 or scores.shape[1] < 2:
            raise ValueError(f"grading needs truth (N,) and probabilities (N, C >= 2), got {labels.shape}, {scores.shape}")
        if labels.min() < 0 or labels.max() >= scores.shape[1]:
            raise ValueError(f"truth has grades outside 0..{scores.shape[1] - 1}")
    else:
        if labels.shape != scores.shape:
            raise ValueError(f"truth and probabilities must both be (N, L), got {labels.shape} and {scores.shape}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("multi-label truth must hold 0 or 1")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return labels, scores


def replicate_metrics(
    truth: np.ndarray,
    probabilities: np.ndarray,
    task: str,
    weights: np.ndarray | None = None,
    threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """The task's metrics (grading: kappa, accuracy; multilabel: kappa, accuracy, auroc) per replicate, each an
    array ``(R,)``, NaN where undefined.

    ``weights`` ``(R, N)`` are how often each test image was drawn in each replicate (None: the data once, R = 1).
    Replicate r's value equals :mod:`comcl.finetune.metrics` on the data with image i repeated ``weights[r, i]``
    times; with the data once it equals ``grading_metrics`` / ``multilabel_metrics`` (None there is NaN here).
    """
    labels, scores = _checked(truth, probabilities, task, threshold)
    drawn = np.ones((1, labels.shape[0])) if weights is None else np.asarray(weights, dtype=np.float64)
    if drawn.ndim != 2 or drawn.shape[1] != labels.shape[0] or (drawn < 0).any() or not (drawn.sum(axis=1) > 0).all():
        raise ValueError(f"weights must be non-negative counts (R, {labels.shape[0]}) with a draw in each replicate")
    return _metrics(labels, scores, task, drawn, threshold)


def _metrics(labels: np.ndarray, scores: np.ndarray, task: str, weights: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """:func:`replicate_metrics` on inputs already checked."""
    if task == "grading":
        return _grading(labels, scores, weights)
    return _multilabel(labels, scores, weights, threshold)


# --- the paired bootstrap ---------------------------------------------------------------------------------------


def _image_draws(images: int, replicates: int, seed: int) -> Iterator[np.ndarray]:
    """The image weights of the replicates, in chunks ``(r, images)``: counts of a draw of ``images`` images with
    replacement. Their own stream of ``seed``, apart from the seeds' draws, so every comparison on one test set
    gets the same image draws, whatever its seeds."""
    rng = np.random.default_rng([seed, 0])
    chunk = max(1, CHUNK_CELLS // images)
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        drawn = rng.integers(0, images, size=(size, images)) + np.arange(size)[:, None] * images
        yield np.bincount(drawn.ravel(), minlength=size * images).reshape(size, images).astype(np.float64)


def _seed_draws(seeds: int, replicates: int, seed: int) -> np.ndarray:
    """How often each common seed is drawn in each replicate ``(R, seeds)``; a single seed is drawn every time."""
    rng = np.random.default_rng([seed, 1])
    drawn = rng.integers(0, seeds, size=(replicates, seeds)) + np.arange(replicates)[:, None] * seeds
    return np.bincount(drawn.ravel(), minlength=replicates * seeds).reshape(replicates, seeds).astype(np.float64)


K = TypeVar("K", bound=Hashable)


class _Evaluated(Generic[K]):
    """The metrics of some runs on one test set, on all images and on each bootstrap replicate of the images (the
    same draws for every run), so that a run compared many times is evaluated once."""

    def __init__(
        self,
        truth: np.ndarray,
        runs: Mapping[K, np.ndarray],
        task: str,
        replicates: int,
        seed: int,
        threshold: float,
    ) -> None:
        if replicates < 1:
            raise ValueError(f"replicates must be at least 1, got {replicates}")
        checked = {key: _checked(truth, scores, task, threshold) for key, scores in runs.items()}
        self.images = int(np.asarray(truth).shape[0])
        once = np.ones((1, self.images))
        self.full = {key: _metrics(*pair, task, once, threshold) for key, pair in checked.items()}
        chunks: dict[K, list[dict[str, np.ndarray]]] = {key: [] for key in runs}
        for weights in _image_draws(self.images, replicates, seed):
            for key, (labels, scores) in checked.items():
                chunks[key].append(_metrics(labels, scores, task, weights, threshold))
        self.boot = {
            key: {metric: np.concatenate([part[metric] for part in parts]) for metric in TASK_METRICS[task]}
            for key, parts in chunks.items()
        }
        self.replicates, self.seed = replicates, seed

    def paired(self, ours: Sequence[K], theirs: Sequence[K], metric: str) -> dict[str, Any]:
        """The paired difference of ``metric`` between the runs ``ours[k]`` and ``theirs[k]`` (one pair per common
        seed, in the order given)."""
        mine = np.array([self.full[a][metric][0] for a in ours])
        other = np.array([self.full[b][metric][0] for b in theirs])
        defined = ~np.isnan(mine - other)

        def mean(values: np.ndarray) -> float:
            return float(values[defined].mean()) if defined.any() else math.nan

        point = {"difference": mean(mine - other), "ours": mean(mine), "theirs": mean(other)}
        per_seed = np.stack([self.boot[a][metric] - self.boot[b][metric] for a, b in zip(ours, theirs, strict=True)], axis=1)
        counts = _seed_draws(len(ours), self.replicates, self.seed)
        usable = ~np.isnan(per_seed)
        statistic = _divide((counts * np.where(usable, per_seed, 0.0)).sum(axis=1), (counts * usable).sum(axis=1))
        kept = statistic[~np.isnan(statistic)]
        low, high = np.percentile(kept, [(100 - LEVEL) / 2, (100 + LEVEL) / 2]) if kept.size else (math.nan, math.nan)
        return {
            **point,
            "low": float(low),
            "high": float(high),
            "seeds": len(ours),
            "images": self.images,
            "replicates": int(kept.size),
        }


def _pairing(ours: Mapping[Any, Any], theirs: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """(our seed, their seed) per common seed, sorted. A mapping whose only key is None is a deterministic run
    (evaluated once): it stands for every seed of the other."""
    for name, runs in (("ours", ours), ("theirs", theirs)):
        if None in runs and len(runs) > 1:
            raise ValueError(f"{name} mixes a deterministic run (seed None) with seeded runs: {list(runs)}")
    if None in ours and None in theirs:
        return [(None, None)]
    if None in ours:
        return [(None, s) for s in sorted(theirs)]
    if None in theirs:
        return [(s, None) for s in sorted(ours)]
    common = sorted(set(ours) & set(theirs))
    if not common:
        raise ValueError(f"no seed in common: ours has {sorted(ours)}, theirs {sorted(theirs)}")
    return [(s, s) for s in common]


def paired_difference(
    truth: np.ndarray,
    ours: Mapping[int | None, np.ndarray],
    theirs: Mapping[int | None, np.ndarray],
    task: str,
    metric: str,
    replicates: int = 2000,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The mean difference of ``metric`` between two methods over their common seeds and the same test images, with
    a 95 % paired-bootstrap percentile interval.

    ``truth`` is the test labels ((N,) grades, or (N, L) 0/1), ``ours`` / ``theirs`` map seed -> probabilities
    (N, C) of the same images in the same order; a mapping whose only key is None is a deterministic run (e.g. a
    frozen encoder's linear evaluation) standing for every seed of the other. No common seed is a ValueError.

    ``difference`` is the mean over the common seeds of metric(ours) - metric(theirs) on all images, seeds where
    either is undefined left out; ``ours`` and ``theirs`` are the two means over those seeds, so the difference is
    theirs subtracted from ours. Each replicate draws the seeds with replacement and the images with replacement
    (one draw of images, shared by both methods and every drawn seed) and takes the mean over the drawn seeds of the
    difference on the drawn images (drawn seeds where it is undefined left out); ``low`` and ``high`` are the 2.5
    and 97.5 percentiles over the replicates where it is defined, ``replicates`` how many those were (the rest
    were left out). With a single common seed the bootstrap is over images only, so the interval says nothing
    about the spread between seeds. ``seeds`` and ``images`` count what was compared; the same ``seed`` gives the
    same result.
    """
    if metric not in TASK_METRICS.get(task, ()):
        raise ValueError(f"metric must be one of {', '.join(TASK_METRICS.get(task, ()))} for task {task!r}, got {metric!r}")
    pairs = _pairing(ours, theirs)
    runs = {**{("ours", a): ours[a] for a, _ in pairs}, **{("theirs", b): theirs[b] for _, b in pairs}}
    evaluated = _Evaluated(truth, runs, task, replicates, seed, threshold)
    return evaluated.paired([("ours", a) for a, _ in pairs], [("theirs", b) for _, b in pairs], metric)


# --- the tidy frame -----------------------------------------------------------------------------------------------


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return HIGHER
    if high < 0:
        return LOWER
    return NO_DIFFERENCE


def _seed(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _truth(
    truth: Mapping[tuple[str, str], tuple[str, pd.DataFrame]], dataset: str, version: str, columns: Sequence[str]
) -> tuple[str, pd.Index, np.ndarray]:
    """The task, the image ids and the labels of a test set, checked against its probability columns."""
    if (dataset, version) not in truth:
        raise ValueError(f"no truth for dataset {dataset!r} version {version!r}")
    task, frame = truth[(dataset, version)]
    if "image_id" not in frame.columns:
        raise ValueError(f"the truth of {dataset}/{version} has no image_id column")
    ids = pd.Index(frame["image_id"])
    if ids.has_duplicates:
        raise ValueError(f"the truth of {dataset}/{version} lists an image twice")
    label_columns = [column for column in frame.columns if column != "image_id"]
    wanted = 1 if task == "grading" else len(columns)
    if len(label_columns) != wanted:
        raise ValueError(
            f"the truth of {dataset}/{version} ({task}) needs {wanted} label column(s) for the probability columns "
            f"{list(columns)}, got {label_columns}"
        )
    labels = frame[label_columns].to_numpy()
    return task, ids, labels[:, 0] if task == "grading" else labels


def _aligned(run: pd.DataFrame, ids: pd.Index, columns: Sequence[str], name: str) -> np.ndarray:
    """A run's probabilities in the truth's image order; refused, naming the run, unless it has each image once."""
    own = pd.Index(run["image_id"])
    if own.has_duplicates or len(own) != len(ids) or not own.isin(ids).all():
        missing, extra = ids.difference(own), own.difference(ids)
        raise ValueError(
            f"{name}: image ids differ from the truth's ({len(own)} rows, {len(ids)} test images; "
            f"missing {list(missing[:5])}, unknown {list(extra[:5])}{', duplicated' if own.has_duplicates else ''})"
        )
    scores = run.set_index("image_id").loc[ids, list(columns)].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"{name}: probabilities contain NaN or infinite values")
    return scores


def compare_all(
    predictions: pd.DataFrame,
    truth: Mapping[tuple[str, str], tuple[str, pd.DataFrame]],
    reference: str,
    replicates: int = 2000,
    seed: int = 0,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """The paired comparison (:func:`paired_difference`) of ``reference`` with every other method, per protocol,
    dataset and version where ``reference`` ran, and per metric of the task: one row each, columns
    :data:`COLUMNS`, ``verdict`` "higher" where the interval is above 0, "lower" below, else "no difference shown".

    ``predictions`` has one row per run and test image (columns protocol, dataset, version, method, seed, image_id)
    and the probabilities in its ``p_*`` columns, in frame order; a dataset uses those not all NaN in its rows. A
    run with seed NaN/None is deterministic and stands for every seed of the method it is compared with.
    ``truth[(dataset, version)]`` is (task, a frame of image_id and the label column(s): the grade, or one 0/1
    column per probability column in their order). Runs are aligned to the truth by image_id; a run whose image ids
    differ is refused with a ValueError naming it. Methods keep their order of first appearance.
    """
    missing = [key for key in RUN_KEYS if key not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack the column(s) {', '.join(missing)}")
    probability_columns = [column for column in predictions.columns if str(column).startswith("p_")]
    dataset_columns = {
        dataset: [column for column in probability_columns if rows[column].notna().any()]
        for dataset, rows in predictions.groupby("dataset", sort=False)
    }
    order = list(pd.unique(predictions["method"]))
    records: list[dict[str, Any]] = []
    for (protocol, dataset, version), rows in predictions.groupby(["protocol", "dataset", "version"], sort=False):
        if reference not in set(rows["method"]):
            continue
        columns = dataset_columns[dataset]
        task, ids, labels = _truth(truth, dataset, version, columns)
        runs: dict[tuple[str, int | None], np.ndarray] = {}
        for (method, value), run in rows.groupby(["method", "seed"], sort=False, dropna=False):
            name = f"{protocol}/{dataset}/{version}/{method} seed {_seed(value)}"
            runs[(method, _seed(value))] = _aligned(run, ids, columns, name)
        evaluated = _Evaluated(labels, runs, task, replicates, seed, threshold)
        seeds = {method: [s for m, s in runs if m == method] for method in order}
        for method in order:
            if method == reference or not seeds[method]:
                continue
            try:
                pairs = _pairing(dict.fromkeys(seeds[reference]), dict.fromkeys(seeds[method]))
            except ValueError as error:
                raise ValueError(f"{protocol}/{dataset}/{version}: {reference} vs {method}: {error}") from None
            ours, theirs = [(reference, a) for a, _ in pairs], [(method, b) for _, b in pairs]
            for metric in TASK_METRICS[task]:
                result = evaluated.paired(ours, theirs, metric)
                head = {"protocol": protocol, "dataset": dataset, "version": version, "reference": reference}
                verdict = _verdict(result["low"], result["high"])
                records.append({**head, "method": method, "metric": metric, **result, "verdict": verdict})
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame = frame.astype({"seeds": "int64", "images": "int64", "replicates": "int64"})
    frame.attrs.update(reference=reference, replicates=replicates)  # for the Markdown's text, even when empty
    return frame


# --- the files ----------------------------------------------------------------------------------------------------


def _signed(value: float) -> str:
    """Three decimals with the sign, except for a value that rounds to zero (neither sign is shown)."""
    if math.isnan(value):
        return UNDEFINED
    text = f"{value:+.3f}"
    return "0.000" if text in ("+0.000", "-0.000") else text


def _cell(row: Mapping[str, Any] | None) -> str:
    """The text "difference [low, high]", bold where the interval excludes 0; "–" for a comparison not made."""
    if row is None:
        return MISSING
    if math.isnan(row["difference"]):
        return UNDEFINED
    text = f"{_signed(row['difference'])} [{_signed(row['low'])}, {_signed(row['high'])}]"
    return f"**{text}**" if row["verdict"] in (HIGHER, LOWER) else text


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _markdown(frame: pd.DataFrame, labels: Mapping[str, str]) -> str:
    def name(method: str) -> str:
        return _escape(labels.get(method, method))

    lines = ["# Paired comparisons", ""]
    reference = frame.attrs.get("reference")
    if frame.empty:
        who = f"the reference method {name(reference)}" if reference else "the reference method"
        lines.append(f"No comparison could be made: {who} did not run for any protocol, dataset and version.")
        return "\n".join(lines) + "\n"
    replicates = frame.attrs.get("replicates")
    count = f"{replicates} replicates" if replicates else f"up to {int(frame['replicates'].max())} replicates"
    lines += [
        (
            "Each cell is the mean difference reference − method over the same seeds and test images, and its 95 % "
            f"interval: paired bootstrap over seeds and test images ({count}, each drawing seeds and images with "
            "replacement, the same draw for both methods), 2.5 and 97.5 percentiles. A difference is higher or lower "
            "(in bold) only where the interval excludes 0; n/d: undefined, –: not compared."
        ),
        "",
    ]
    for (protocol, dataset), block in frame.groupby(["protocol", "dataset"], sort=False):
        versions = list(pd.unique(block["version"]))
        metrics = list(pd.unique(block["metric"]))
        cells = {(row["method"], row["version"], row["metric"]): row for row in block.to_dict("records")}
        header = ["Comparison"] + [f"{version} {METRIC_LABELS.get(metric, metric)}" for version in versions for metric in metrics]
        lines += [f"## {_escape(protocol)}: {_escape(dataset)}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (ours, method), _ in block.groupby(["reference", "method"], sort=False):
            row = [f"{name(ours)} − {name(method)}"]
            row += [_cell(cells.get((method, version, metric))) for version in versions for metric in metrics]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparisons(
    frame: pd.DataFrame, csv_path: str | Path, markdown_path: str | Path, labels: Mapping[str, str] | None = None
) -> None:
    """The frame of :func:`compare_all` as CSV (undefined values as empty cells) and as Markdown: per protocol and
    dataset a table, one row per method compared with the reference, one "difference [low, high]" column per
    version and metric. ``labels`` gives display names of methods (e.g. comcl -> CoMCL); others show as they are."""
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")
    write_text(markdown_path, _markdown(frame, labels or {}))


def _predictions(finetuned: Sequence[Mapping[str, Any]], linear: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Every run's test probabilities in one frame: a fine-tuning's file holds one run, a linear evaluation's every
    encoder of its dataset version (with the seed of each, empty for an encoder evaluated once)."""
    frames = []
    for run in finetuned:
        frame, _ = read_table(run["predictions"])
        frames.append(
            frame.assign(
                protocol="fine-tuning", dataset=run["dataset"], version=run["version"], method=run["method"], seed=run["seed"]
            )
        )
    for run in linear:
        frame, _ = read_table(run["predictions"])
        frames.append(frame.assign(protocol="linear evaluation", dataset=run["dataset"], version=run["version"]))
    if not frames:
        return pd.DataFrame(columns=list(RUN_KEYS))
    merged = pd.concat(frames, ignore_index=True)
    return merged[[*RUN_KEYS, *(c for c in merged.columns if c.startswith("p_"))]]


def compare_runs(
    finetuned: Sequence[Mapping[str, Any]],
    linear: Sequence[Mapping[str, Any]],
    indexes: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    labels: Mapping[str, str],
    csv: str | Path,
    markdown: str | Path,
) -> pd.DataFrame:
    """The comparisons of the workflow's runs: ``finetuned`` (dataset, version, method, seed, predictions),
    ``linear`` (dataset, version, predictions) and ``indexes`` (dataset, version, index: the test labels);
    ``params``: reference, replicates, seed, threshold and init (how the linear evaluation's start is named)."""
    truth = {}
    for entry in indexes:
        frame, meta = read_table(entry["index"])
        test = frame[frame["split"] == "test"]
        truth[(entry["dataset"], entry["version"])] = (meta["task"], test[["image_id", *meta["label_columns"]]])
    frame = compare_all(
        _predictions(finetuned, linear), truth, params["reference"], params["replicates"], params["seed"], params["threshold"]
    )
    write_comparisons(frame, csv, markdown, {**labels, START: START_LABELS.get(params["init"], "Start weights")})
    return frame
