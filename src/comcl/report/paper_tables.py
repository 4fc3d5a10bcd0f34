"""Tables 1-3 of the paper from the fine-tuning results: our mean ± std over seeds beside the paper's numbers, as CSV
(tidy, one row per cell), Markdown, LaTeX and HTML, plus per-class (per-label) metrics per dataset.

What the tables show, the paper's numbers (every one it publishes, by table) and the notes on how far our data
compare with the paper's live in ``published.yaml`` beside this module, not in code. A cell never shows a number that
was not computed or published: a method not run shows "–", a metric undefined in every seed "n/d", and a row of a
method this project does not implement shows the paper's numbers only. Undefined metrics are NaN inside the frames
and empty cells in the CSV files, never the text "nan".
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from comcl.errors import DataError
from comcl.finetune.results import DETAIL, SPLITS, TASK_METRICS, read_metrics
from comcl.io import atomic_path, write_text

FORMATS = ("csv", "md", "tex", "html")
RUN_COLUMNS = ("dataset", "version", "method", "seed", "task", "metric", "value", "init")
SUMMARY_COLUMNS = ("dataset", "version", "method", "metric", "mean", "std", "seeds", "defined", "init")
CSV_COLUMNS = (
    "table", "dataset", "version", "group", "row", "method", "source", "metric", "mean", "std", "seeds", "defined", "paper", "init",
)  # fmt: skip
INIT_KINDS = ("scratch", "imagenet", "encoder")  # a summary's init: the first kind any seed had, in this order
MISSING, UNDEFINED, DAGGER, DDAGGER, CHECK = "–", "n/d", "†", "‡", "✓"
FOOTNOTES = {
    "dagger": f"{DAGGER} from scratch: ImageNet weights could not be fetched, or pretrain.init is scratch",
    "undefined": f"{UNDEFINED}: undefined (e.g. a constant prediction)",
    "paper_only": "(paper only): a method this project does not implement; the paper's numbers only",
}
LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--", DAGGER: r"$^\dagger$",
    DDAGGER: r"$^\ddagger$",
}  # fmt: skip
CSS = (
    "body{font-family:sans-serif;font-size:13px;margin:1em}"
    "table{border-collapse:collapse;margin:0 0 1.2em}"
    "caption{font-weight:bold;text-align:left;padding:4px 0}"
    "th,td{border-bottom:1px solid #ddd;padding:2px 8px}"
    "td.num{text-align:right;white-space:nowrap}td.mark{text-align:center}"
    "tr.group th{text-align:left;font-style:italic;background:#f4f4f4}"
    "p.note{font-size:12px;color:#444;margin:2px 0}"
)


@dataclass(frozen=True)
class _Row:
    """A table row: ``method`` is None for a method of the paper that this project does not implement."""

    group: str
    label: str
    method: str | None
    published_as: str


@dataclass(frozen=True)
class _Line:
    """A row as shown: its label with its marks, the level-pair check marks and the cells (per version, per metric:
    ours, then paper)."""

    label: str
    marks: tuple[bool, ...]
    cells: tuple[str, ...]


@dataclass(frozen=True)
class _Block:
    """One dataset of a table, as shown: labels of the versions and metrics, and the lines grouped."""

    label: str
    versions: tuple[str, ...]
    metrics: tuple[str, ...]
    groups: tuple[tuple[str, tuple[_Line, ...]], ...]


@dataclass(frozen=True)
class _View:
    """A table ready to render: every format draws the same view, so the four files cannot disagree."""

    key: str
    number: int
    title: str
    pairs: tuple[tuple[str, str], ...]
    blocks: tuple[_Block, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Results:
    """What the tables are made of: the layout, our summary by (dataset, version, method, metric) and the context."""

    layout: dict[str, Any]
    stats: dict[tuple[str, ...], dict[str, Any]]
    methods: tuple[str, ...]
    scratch: frozenset[tuple[str, str]]
    partial: Mapping[tuple[str, str, str], tuple[tuple[str, str], ...]]
    datasets: tuple[str, ...]
    versions: tuple[str, ...]
    metrics: dict[str, tuple[str, ...]]
    variants: Mapping[str, Mapping[str, Any]]
    notes: tuple[str, ...]
    seeds: int


def _layout() -> dict[str, Any]:
    return yaml.safe_load(resources.files("comcl.report").joinpath("published.yaml").read_text(encoding="utf-8"))


# The tables, numbered in published.yaml's order: table1, table2, table3.
TABLES: tuple[str, ...] = tuple(_layout()["tables"])


def _load(run: Mapping[str, Any]) -> dict[str, Any]:
    hint = (
        f"rerun the fine-tuning of {run['dataset']}/{run['version']}/{run['method']} seed {run['seed']}: "
        "delete the file and run the workflow again"
    )
    return read_metrics(run["metrics"], hint)


def _frame(loaded: Sequence[tuple[Mapping[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    records = [
        {
            **{key: run[key] for key in ("dataset", "version", "method")},
            "seed": int(run["seed"]),
            "task": document["task"],
            "metric": metric,
            "value": math.nan if document["test"][metric] is None else float(document["test"][metric]),
            "init": document["init"],
        }
        for run, document in loaded
        for metric in TASK_METRICS[document["task"]]
    ]
    return pd.DataFrame(records, columns=list(RUN_COLUMNS)).astype({"seed": "int64", "value": "float64"})


def _init_kind(inits: Iterable[str]) -> str:
    """How the seeds were initialised, as one word: "scratch" if any seed was (the table must say so), else
    "imagenet" or "encoder"."""
    kinds = {init.split(" ", 1)[0] for init in inits}
    return next((kind for kind in INIT_KINDS if kind in kinds), ", ".join(sorted(kinds)))


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, version, method and metric: mean and sample std (ddof=1) over the seeds where the metric is
    defined (std NaN below two), seeds (runs), defined (runs with the metric defined) and init (:func:`_init_kind`)."""
    grouped = frame.groupby(["dataset", "version", "method", "metric"], sort=False)
    summary = grouped["value"].agg(["mean", "std", "size", "count"]).rename(columns={"size": "seeds", "count": "defined"})
    summary["init"] = grouped["init"].agg(_init_kind)
    return summary.reset_index()[list(SUMMARY_COLUMNS)]


def _fixed(value: float) -> str:
    """Three decimals, without the sign of a value that rounds to zero."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _ours(stats: Mapping[str, Any] | None) -> str:
    if stats is None:
        return MISSING
    if stats["defined"] == 0:
        return UNDEFINED
    if stats["defined"] == 1:
        return _fixed(stats["mean"])
    return f"{_fixed(stats['mean'])} ± {_fixed(stats['std'])}"


def _label(layout: Mapping[str, Any], kind: str, name: str) -> str:
    return layout[kind].get(name, name)


def _level_pairs(variant: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (anchor level, negative level) pairs a variant trains on, read through its groups: a pair of groups of one
    level each is that pair of levels; a merged group (lesion = L and L~) matches no single-level pair."""
    groups = variant.get("groups", {})
    pairs = set()
    for anchor, negative in variant.get("pairs", []):
        left, right = groups.get(anchor, [anchor]), groups.get(negative, [negative])
        if len(left) == 1 and len(right) == 1:
            pairs.add((left[0], right[0]))
    return pairs


def _extra_rows(extra: Mapping[str, str], results: _Results) -> list[_Row]:
    """Rows for the methods with results that no table lists: a baseline by its architecture's label, anything else
    by its variant's name, so that no result goes unreported."""
    layout = results.layout
    listed = {row.get("method") for table in layout["tables"].values() for group in table["groups"] for row in group["rows"]}
    rows = []
    for method in results.methods:
        if method in listed:
            continue
        if method in layout["baselines"]:
            group, label = extra["baseline"], layout["baselines"][method]
        else:
            group, label = extra["pretrained"], str(results.variants.get(method, {}).get("name", method))
        rows.append(_Row(group, label, method, label))
    return rows


def _rows(spec: Mapping[str, Any], results: _Results) -> list[_Row]:
    groups = {
        group["name"]: [
            _Row(group["name"], row["label"], row.get("method"), row.get("published_as", row["label"])) for row in group["rows"]
        ]
        for group in spec["groups"]
    }
    for row in _extra_rows(spec["extra"], results) if "extra" in spec else []:
        groups.setdefault(row.group, []).append(row)
    return [row for rows in groups.values() for row in rows]


def _paper(results: _Results, key: str, dataset: str, version: str, row: _Row) -> Mapping[str, float]:
    """The paper's numbers of a row in table ``key``, looked up by table: the paper's tables are separate experiments,
    and a row may have numbers in one and none in another (Basic CL: Table 2 only)."""
    return results.layout["published"].get(key, {}).get(dataset, {}).get(version, {}).get(row.published_as, {})


def _used_versions(key: str, rows: Sequence[_Row], results: _Results) -> tuple[str, ...]:
    """The versions where two rows of the table or more have results or paper numbers (else where one has): an
    ablation usually runs on one version, and columns of one filled row among dashes would only hide that."""
    ran = {(dataset, version, method) for dataset, version, method, _ in results.stats}

    def filled(version: str) -> int:
        return sum(
            any((d, version, row.method) in ran or _paper(results, key, d, version, row) for d in results.datasets)
            for row in rows
        )

    counts = {version: filled(version) for version in results.versions}
    return (
        tuple(v for v in results.versions if counts[v] >= 2) or tuple(v for v in results.versions if counts[v]) or ("original",)
    )


def _record(
    key: str, dataset: str, version: str, row: _Row, metric: str, stats: Mapping[str, Any] | None, paper: Any
) -> dict[str, Any]:
    ours = row.method is not None
    stats = stats or {}
    return {
        "table": key, "dataset": dataset, "version": version, "group": row.group, "row": row.label, "method": row.method,
        "source": "ours" if ours else "paper", "metric": metric, "mean": stats.get("mean"), "std": stats.get("std"),
        "seeds": stats.get("seeds", 0 if ours else None), "defined": stats.get("defined", 0 if ours else None),
        "paper": paper, "init": stats.get("init"),
    }  # fmt: skip


def _partial_note(results: _Results, versions: Sequence[str]) -> str:
    """What a ‡ cell trained on: at 100 % low quality no L or H image is left, so CoMCL keeps only (L~, H~)."""
    parts = []
    for (dataset, version, method), pairs in sorted(results.partial.items()):
        if version in versions:
            name = results.variants.get(method, {}).get("name", method)
            where = f"{_label(results.layout, 'datasets', dataset)} {_label(results.layout, 'versions', version)}"
            parts.append(f"{name} on {where}: {', '.join(f'({a}, {n})' for a, n in pairs)}")
    return f"{DDAGGER} trained on the level pairs that have images at this proportion only: " + "; ".join(parts)


def _table(key: str, results: _Results) -> tuple[_View, pd.DataFrame]:
    """A table's view and its tidy CSV frame, built in one pass over the same cells."""
    layout = results.layout
    spec = layout["tables"][key]
    rows = _rows(spec, results)
    versions = results.versions if spec.get("all_versions") else _used_versions(key, rows, results)
    pairs = tuple((anchor, negative) for anchor, negative in spec.get("pairs", []))
    blocks: list[_Block] = []
    records: list[dict[str, Any]] = []
    flags: set[str] = set()
    for dataset in results.datasets:
        metrics = results.metrics[dataset]
        lines: dict[str, list[_Line]] = {}
        for row in rows:
            cells = []
            for version in versions:
                published = _paper(results, key, dataset, version, row)
                for metric in metrics:
                    stats = results.stats.get((dataset, version, row.method or "", metric))
                    paper = published.get(metric)
                    ours = "" if row.method is None else _ours(stats)
                    if (dataset, version, row.method) in results.partial and stats is not None:
                        ours = f"{ours} {DDAGGER}"
                        flags.add("partial")
                    cells += [ours, MISSING if paper is None else _fixed(paper)]
                    records.append(_record(key, dataset, version, row, metric, stats, paper))
            if UNDEFINED in cells:
                flags.add("undefined")
            label = row.label
            if row.method is None:
                label = f"{label} (paper only)"
                flags.add("paper_only")
            elif (dataset, row.method) in results.scratch:
                label = f"{label} {DAGGER}"
                flags.add("dagger")
            done = (
                _level_pairs(results.variants[row.method]) if row.method is not None and row.method in results.variants else set()
            )
            lines.setdefault(row.group, []).append(_Line(label, tuple(pair in done for pair in pairs), tuple(cells)))
        blocks.append(
            _Block(
                _label(layout, "datasets", dataset),
                tuple(_label(layout, "versions", version) for version in versions),
                tuple(_label(layout, "metrics", metric) for metric in metrics),
                tuple((group, tuple(entries)) for group, entries in lines.items()),
            )
        )
    seeds = f"{results.seeds} seed{'' if results.seeds == 1 else 's'}"
    legend = f"ours: mean ± std over {seeds}; paper: published numbers on record, {MISSING} where none."
    notes = (legend, *(text for flag, text in FOOTNOTES.items() if flag in flags))
    if "partial" in flags:
        notes += (_partial_note(results, versions),)
    notes += results.notes
    view = _View(key, TABLES.index(key) + 1, spec["title"], pairs, tuple(blocks), notes)
    frame = pd.DataFrame(records, columns=list(CSV_COLUMNS)).astype(
        {"mean": "float64", "std": "float64", "paper": "float64", "seeds": "Int64", "defined": "Int64"}
    )
    return view, frame


def _markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _markdown(view: _View) -> str:
    """By hand: ``DataFrame.to_markdown`` pads every column, escapes no ``|`` and needs tabulate, not a dependency."""
    lines = [f"## Table {view.number}: {view.title}", ""]
    for block in view.blocks:
        data = [
            f"{version}: {metric} ({source})"
            for version in block.versions
            for metric in block.metrics
            for source in ("ours", "paper")
        ]
        head = ["Group", "Method", *(f"({anchor}, {negative})" for anchor, negative in view.pairs), *data]
        align = ["---", "---", *[":-:"] * len(view.pairs), *["---:"] * len(data)]
        lines += [f"### {block.label}", "", _markdown_row(head), _markdown_row(align)]
        for group, entries in block.groups:
            for i, line in enumerate(entries):
                marks = (CHECK if mark else "" for mark in line.marks)
                lines.append(_markdown_row([group if i == 0 else "", line.label, *marks, *line.cells]))
        lines.append("")
    lines += [f"- {note}" for note in view.notes]
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    return "".join(LATEX.get(char, char) for char in text)


def _latex_cell(cell: str) -> str:
    """A cell with a negative number's minus sign in math mode, where a text hyphen would be too short."""
    return "$-$" + _latex(cell[1:]) if cell.startswith("-") else _latex(cell)


def _latex_pair(pair: tuple[str, str]) -> str:
    """A level pair in math mode, a trailing ``~`` (low quality) as a tilde accent: (L, L~) -> $(L, \\tilde{L})$."""
    levels = (rf"\tilde{{{level[:-1]}}}" if level.endswith("~") else level for level in pair)
    return "$(" + ", ".join(levels) + ")$"


def _latex_tabular(view: _View, block: _Block) -> list[str]:
    """By hand: ``Styler.to_latex`` has no ``\\cmidrule`` under the spanning headers nor full-width group rows, and
    its LaTeX escaping leaves ±, †, – and a minus sign as text."""
    lead, span = 1 + len(view.pairs), 2 * len(block.metrics)
    width = lead + span * len(block.versions)
    pairs = len(block.versions) * len(block.metrics)
    versions = [rf"\multicolumn{{{span}}}{{c}}{{{_latex(version)}}}" for version in block.versions]
    metrics = [rf"\multicolumn{{2}}{{c}}{{{_latex(metric)}}}" for _ in block.versions for metric in block.metrics]
    lines = [
        rf"\begin{{tabular}}{{l{'c' * (width - 1)}}}",
        r"\toprule",
        " & ".join([""] * lead + versions) + r" \\",
        " ".join(rf"\cmidrule(lr){{{lead + 1 + i * span}-{lead + (i + 1) * span}}}" for i in range(len(block.versions))),
        " & ".join([""] * lead + metrics) + r" \\",
        " ".join(rf"\cmidrule(lr){{{lead + 1 + 2 * j}-{lead + 2 + 2 * j}}}" for j in range(pairs)),
        " & ".join(["Method", *map(_latex_pair, view.pairs), *["ours", "paper"] * pairs]) + r" \\",
    ]
    for group, entries in block.groups:
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\textit{{{_latex(group)}}}}} \\"]
        for line in entries:
            marks = (r"\checkmark" if mark else "" for mark in line.marks)
            lines.append(" & ".join([_latex(line.label), *marks, *map(_latex_cell, line.cells)]) + r" \\")
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def _latex_table(view: _View) -> str:
    lines = [
        f"% Table {view.number}: {view.title}. Needs \\usepackage{{booktabs}} and \\usepackage{{amssymb}}.",
        r"\begin{table*}[t]",
        r"\centering",
        rf"\caption{{{_latex(view.title)}}}",
        rf"\label{{tab:{view.key}}}",
        r"\small",
    ]
    for block in view.blocks:
        lines += ["", rf"\textbf{{{_latex(block.label)}}}\par\smallskip", *_latex_tabular(view, block), r"\par\medskip"]
    lines += ["", r"{\footnotesize", *(rf"{_latex(note)}\par" for note in view.notes), "}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def _html_table(view: _View, block: _Block) -> list[str]:
    """By hand: ``Styler.to_html`` gives each cell an id and classes of its own, not num and mark, and has no
    full-width group rows."""
    span, escape = 2 * len(block.metrics), html.escape
    width = 1 + len(view.pairs) + span * len(block.versions)
    pairs = (escape(f"({anchor}, {negative})".replace("~", "\u0303")) for anchor, negative in view.pairs)  # L~ as L̃
    head = [
        "<tr>" + '<th rowspan="3">Method</th>' + "".join(f'<th rowspan="3">{pair}</th>' for pair in pairs)
        + "".join(f'<th colspan="{span}">{escape(version)}</th>' for version in block.versions) + "</tr>",
        "<tr>" + "".join(f'<th colspan="2">{escape(metric)}</th>' for _ in block.versions for metric in block.metrics) + "</tr>",
        "<tr>" + "<th>ours</th><th>paper</th>" * (len(block.versions) * len(block.metrics)) + "</tr>",
    ]  # fmt: skip
    body = []
    for group, entries in block.groups:
        body.append(f'<tr class="group"><th colspan="{width}">{escape(group)}</th></tr>')
        for line in entries:
            marks = "".join(f'<td class="mark">{CHECK if mark else ""}</td>' for mark in line.marks)
            cells = "".join(f'<td class="num">{escape(cell)}</td>' for cell in line.cells)
            body.append(f"<tr><td>{escape(line.label)}</td>{marks}{cells}</tr>")
    return [
        "<table>",
        f"<caption>{escape(block.label)}</caption>",
        "<thead>",
        *head,
        "</thead>",
        "<tbody>",
        *body,
        "</tbody>",
        "</table>",
    ]


def _html(view: _View) -> str:
    heading = html.escape(f"Table {view.number}: {view.title}")
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{heading}</title>"]
    lines += [f"<style>{CSS}</style>", "</head>", "<body>", f"<h2>{heading}</h2>"]
    for block in view.blocks:
        lines += _html_table(view, block)
    lines += [f'<p class="note">{html.escape(note)}</p>' for note in view.notes]
    return "\n".join([*lines, "</body>", "</html>"]) + "\n"


def _per_class(
    loaded: Sequence[tuple[Mapping[str, Any], dict[str, Any]]], dataset: str, task: str, versions: Sequence[str]
) -> pd.DataFrame:
    """Per-class (grading) or per-label (multi-label) test metrics of a dataset, the mean over seeds per version and
    method: the tables' averages hide a class that is never predicted."""
    key, entry, fields = DETAIL[task]
    records = [
        {
            "version": run["version"],
            "method": run["method"],
            entry: name,
            **{f: values[f] for f in fields},
            "support": values["support"],
        }
        for run, document in loaded
        if run["dataset"] == dataset
        for name, values in document["test"][key].items()
    ]
    frame = pd.DataFrame(records, columns=["version", "method", entry, *fields, "support"]).astype(
        dict.fromkeys([*fields, "support"], "float64")
    )
    means = frame.groupby(["version", "method", entry], sort=False).mean().reset_index()
    rank = {version: i for i, version in enumerate(versions)}
    return means.sort_values("version", key=lambda column: column.map(rank), kind="stable")


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def _task(dataset: str, frame: pd.DataFrame, context: Mapping[str, Any], layout: Mapping[str, Any]) -> str:
    """The dataset's task from its results, or from its format when it has none yet."""
    tasks = list(dict.fromkeys(frame.loc[frame["dataset"] == dataset, "task"]))
    if len(tasks) > 1:
        raise DataError(
            f"the fine-tuning results of dataset {dataset!r} mix tasks ({', '.join(tasks)})",
            hint="rerun the fine-tuning of this dataset so that all its metrics.json files come from one index",
        )
    section = context["datasets"][dataset]
    return tasks[0] if tasks else section.get("task") or layout["format_tasks"][section["format"]]


def _sizes(sizes: Mapping[str, Mapping[str, int]], layout: Mapping[str, Any]) -> str:
    """Split sizes once if every version has the same, else per version."""
    texts = {version: ", ".join(f"{split} {counts[split]}" for split in SPLITS) for version, counts in sizes.items()}
    if not texts:
        return "no results yet"
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{_label(layout, 'versions', version)}: {text}" for version, text in texts.items())


def _dataset_note(dataset: str, context: Mapping[str, Any], layout: Mapping[str, Any]) -> str | None:
    """The layout's note on a dataset, by its name or its format: a chest set named otherwise is still ChestX-ray14,
    and one named chestxray14 gets the paper's chest numbers beside it."""
    notes = layout.get("dataset_notes", {})
    names = (dataset, context["datasets"].get(dataset, {}).get("format"))
    return next((f"{_label(layout, 'datasets', dataset)}: {notes[name]}" for name in names if name in notes), None)


def _notes(
    loaded: Sequence[tuple[Mapping[str, Any], dict[str, Any]]],
    datasets: Sequence[str],
    versions: Sequence[str],
    context: Mapping[str, Any],
    layout: Mapping[str, Any],
    indexes: Mapping[str, Mapping[str, Any]],
) -> tuple[str, ...]:
    """The configuration that produced the tables, so that a table read on its own says what it measures, and how far
    each dataset compares with the paper's."""
    finetune, pretrain = context["finetune"], context["pretrain"]
    balanced = ", class-balanced sampling" if finetune["balanced"] else ""
    loss = "grade regression (MSE)" if finetune["loss"] == "mse" else "cross-entropy"
    budget = f"{pretrain['epochs']} epochs" if pretrain["steps"] is None else f"{pretrain['steps']} steps each"
    configuration = (
        f"Configuration: seeds {', '.join(map(str, context['seeds']))}; fine-tuning {finetune['epochs']} epochs, "
        f"input {finetune['input_size']} px, batch {finetune['batch_size']}, {finetune['optimizer']} lr {finetune['lr']}"
        f"{' cosine' if finetune['cosine'] else ''}, grading by {loss}{balanced}; "
        f"pretraining {pretrain['arch']}, {budget}, batch {pretrain['batch_size']}, views {pretrain['view_size']} px."
    )
    if context.get("file"):
        configuration += f" Every setting: {context['file']}."
    first: dict[str, dict[str, dict[str, int]]] = {}
    for run, document in loaded:
        first.setdefault(run["dataset"], {}).setdefault(run["version"], document["sizes"])
    lines = [configuration]
    for dataset in datasets:
        runs = first.get(dataset, {})
        sizes = _sizes({version: runs[version] for version in versions if version in runs}, layout)
        root = context["datasets"].get(dataset, {}).get("root")
        where = f"root {root}; " if root else ""
        removed = indexes.get(dataset, {}).get("boxed_test_images_removed")
        boxed = f" {removed} test images of its box list left the test split: they train the lesion detector." if removed else ""
        lines.append(f"{_label(layout, 'datasets', dataset)}: {where}split sizes {sizes}.{boxed}")
        note = _dataset_note(dataset, context, layout)
        if note:
            lines.append(note)
    return tuple(lines)


def _steps_note(steps: Mapping[tuple[str, str, str], int], variants: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The optimiser steps of the pretrainings: one number when every method had the same budget, else each
    method's (a method of equal steps on every version named once), so that a table says what each row cost."""
    if not steps:
        return None
    if len(set(steps.values())) == 1:
        return f"Pretraining: every encoder {next(iter(steps.values()))} optimiser steps."
    per_method: dict[str, list[int]] = {}
    for (_, _, method), count in steps.items():
        per_method.setdefault(str(variants.get(method, {}).get("name", method)), []).append(count)
    parts = [f"{name} {'/'.join(map(str, dict.fromkeys(counts)))}" for name, counts in per_method.items()]
    return "Pretraining steps (not equal budgets; pretrain.steps sets one): " + ", ".join(parts) + "."


def _with_pretraining(run: Mapping[str, Any], document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A pretrained method's run, its init read as the family its encoder started from (the pretraining's
    ``init``: imagenet or scratch), so that a table can say whether every method had the same start; and the
    pretraining's summary. A baseline's run as it is."""
    if not run.get("pretraining"):
        return document, None
    path = Path(run["pretraining"])
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        init = summary["init"]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(
            f"cannot read the pretraining's initialisation: {error}", path=path, hint="run that pretraining again"
        ) from error
    return {**document, "init": init}, summary


def _read_json(path: str | Path, hint: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {Path(path).name}: {error}", path=path, hint=hint) from error


def _read_indexes(paths: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    return {dataset: _read_json(path, "run the index stage again") for dataset, path in paths.items()}


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _truth_notes(measured: Sequence[Mapping[str, Any]], layout: Mapping[str, Any]) -> list[str]:
    """Per dataset, how much of what pretraining read as lesion was lesion (train split), by version and level."""
    by_dataset: dict[str, list[Mapping[str, Any]]] = {}
    for document in measured:
        by_dataset.setdefault(document["dataset"], []).append(document)
    notes = []
    for dataset, documents in by_dataset.items():
        parts, dropped, dropped_true = [], 0, 0
        for document in documents:
            cells = document["per_split_level"].get("train", {})
            levels = [
                f"{level} {_share(cell['purity'])} (precision {_share(cell['precision'])}, recall {_share(cell['recall'])})"
                for level, cell in cells.items()
            ]
            parts.append(f"{document['proportion']}: {', '.join(levels)}")
            dropped += sum(cell["rim_dropped"] for cell in cells.values())
            dropped_true += sum(cell["rim_dropped_true"] for cell in cells.values())
        notes.append(
            f"{_label(layout, 'datasets', dataset)} lesion patches against the dataset's own lesion boxes (train split, "
            f"detections above {documents[0]['conf']}): purity {'; '.join(parts)}. {dropped} detections on the field of "
            f"view's rim were dropped, {dropped_true} of them on a lesion."
        )
    return notes


def _start_note(summary: pd.DataFrame) -> str | None:
    """One note for the whole table when every method had the same start (else the rows started from scratch get
    a dagger)."""
    kinds = set(summary["init"])
    if kinds == {"imagenet"}:
        return "Start: every method from ImageNet weights (the pretrained encoders and the baselines)."
    if kinds == {"scratch"}:
        return "Start: every method from scratch (ImageNet weights could not be fetched, or pretrain.init is scratch)."
    return None


def write_tables(
    runs: Sequence[Mapping[str, Any]],
    variants: Mapping[str, Mapping[str, Any]],
    context: Mapping[str, Any],
    folder: str | Path,
    indexes: Mapping[str, str | Path] | None = None,
    truths: Sequence[str | Path] = (),
) -> None:
    """Write ``<folder>/<table>.<format>`` for each of :data:`TABLES` and :data:`FORMATS`, and
    ``<folder>/per_class_<dataset>.csv`` per dataset. ``variants``: method -> its pretraining variant definition (for
    the names of unlisted variants and Table 3's level pairs, so the marks say what ran); ``context``: the datasets
    (name -> format and root, in table order), versions, seeds and the fine-tuning and pretraining settings;
    ``indexes``: dataset -> the summary.json of its original index (how many boxed images left its test split);
    ``truths``: the lesion-truth measurements (:mod:`comcl.patches.truth`) of the versions that have them."""
    layout = _layout()
    loaded, partial, steps = [], {}, {}
    for run in runs:
        document, pretraining = _with_pretraining(run, _load(run))
        loaded.append((run, document))
        if pretraining and "steps" in pretraining:
            steps[(run["dataset"], run["version"], run["method"])] = int(pretraining["steps"])
        if pretraining and pretraining.get("pairs_without_images"):
            partial[(run["dataset"], run["version"], run["method"])] = tuple(tuple(pair) for pair in pretraining["pairs"])
    frame = _frame(loaded)
    summary = summarize(frame)
    start = _start_note(summary)
    datasets = tuple(dict.fromkeys([*context["datasets"], *frame["dataset"]]))
    versions = tuple(dict.fromkeys([*context["versions"], *frame["version"]]))
    tasks = {dataset: _task(dataset, frame, context, layout) for dataset in datasets}
    # One start for all: the note says it once. Else a dagger marks each method that started from scratch.
    scratch = summary.loc[(summary["init"] == "scratch") & (start is None), ["dataset", "method"]]
    results = _Results(
        layout=layout,
        stats=summary.set_index(["dataset", "version", "method", "metric"]).to_dict("index"),
        methods=tuple(dict.fromkeys(summary["method"])),
        scratch=frozenset(scratch.itertuples(index=False, name=None)),
        partial=partial,
        datasets=datasets,
        versions=versions,
        metrics={dataset: TASK_METRICS[task] for dataset, task in tasks.items()},
        variants=variants,
        notes=(
            *([start] if start else []),
            *_notes(loaded, datasets, versions, context, layout, _read_indexes(indexes or {})),
            *([budget] if (budget := _steps_note(steps, variants)) else []),
            *_truth_notes([_read_json(path, "run the lesion_truth rule again") for path in truths], layout),
        ),
        seeds=len(context["seeds"]),
    )
    folder = Path(folder)
    for key in TABLES:
        view, table = _table(key, results)
        _write_csv(folder / f"{key}.csv", table)
        write_text(folder / f"{key}.md", _markdown(view))
        write_text(folder / f"{key}.tex", _latex_table(view))
        write_text(folder / f"{key}.html", _html(view))
    for dataset, task in tasks.items():
        _write_csv(folder / f"per_class_{dataset}.csv", _per_class(loaded, dataset, task, versions))
