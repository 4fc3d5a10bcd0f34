"""Tables 1-3 from small hand-written metrics.json files: the exact Markdown, the LaTeX lines, mean ± std against
numpy, undefined metrics as "n/d" and never "nan", paper-only rows, Table 3's marks from the variants, an unlisted
baseline appended to Table 1, a missing file, and the paper's numbers on record."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from comcl import plan
from comcl.errors import DataError
from comcl.report.context import table_context
from comcl.report.paper_tables import DAGGER, DDAGGER, FORMATS, TABLES, write_tables

CONTEXT: dict[str, Any] = {
    "datasets": {"eyeq": {"format": "eyeq", "root": "data/eyeq"}},
    "versions": ["original", "lq70"],
    "seeds": [0, 1],
    "finetune": {
        "epochs": 5,
        "input_size": 224,
        "batch_size": 8,
        "loss": "mse",
        "optimizer": "sgd",
        "lr": 0.001,
        "cosine": True,
        "balanced": True,
    },
    "pretrain": {"arch": "resnet50", "epochs": 10, "steps": None, "batch_size": 32, "view_size": 128},
}
SCRATCH = "scratch (ImageNet weights unavailable)"
ENCODER = "encoder results/eyeq/original/pretrain/comcl/encoder.pt"
COMCL = {
    "name": "CoMCL",
    "groups": {"L": ["L"], "L~": ["L~"], "H": ["H"], "H~": ["H~"]},
    "pairs": [["L", "L~"], ["L", "H"], ["L~", "H~"]],
}


def _run(
    folder: Path,
    dataset: str,
    version: str,
    method: str,
    seed: int,
    *,
    kappa: float | None,
    accuracy: float | None,
    auroc: float | None = None,
    init: str = ENCODER,
    task: str = "grading",
) -> dict[str, Any]:
    """Write a metrics.json as the fine-tuning writes it and return the run that points to it."""
    test: dict[str, Any] = {"kappa": kappa, "accuracy": accuracy}
    if task == "grading":
        test["per_class"] = {
            "0": {"precision": 0.5 + seed / 10, "recall": 1.0, "support": 3},
            "1": {"precision": None, "recall": 0.0, "support": 1},
        }
        test["confusion"] = [[3, 0], [1, 0]]
    else:
        test["auroc"] = auroc
        test["per_label"] = {"Mass": {"kappa": kappa, "accuracy": accuracy, "auroc": auroc, "support": 2}}
        test["undefined"] = {
            "kappa": [] if kappa is not None else ["Mass"],
            "accuracy": [],
            "auroc": [] if auroc is not None else ["Mass"],
        }
    document = {
        "task": task,
        "arch": "resnet50",
        "init": init,
        "best_epoch": 1,
        "sizes": {"train": 144, "val": 16, "test": 80},
        "test": test,
        "history": [{"epoch": 1, "loss": 1.0, "val_kappa": kappa, "val_accuracy": accuracy}],
    }
    path = folder / "results" / dataset / version / "finetune" / method / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return {"dataset": dataset, "version": version, "method": method, "seed": seed, "metrics": str(path)}


def _fixture_runs(folder: Path) -> list[dict[str, Any]]:
    """A scratch baseline over two seeds, CoMCL with kappa undefined in both seeds, and CoMCL on one seed of lq70."""
    return [
        _run(folder, "eyeq", "original", "resnet50", 0, kappa=0.5, accuracy=0.6, init=SCRATCH),
        _run(folder, "eyeq", "original", "resnet50", 1, kappa=0.7, accuracy=0.8, init=SCRATCH),
        _run(folder, "eyeq", "original", "comcl", 0, kappa=None, accuracy=0.8),
        _run(folder, "eyeq", "original", "comcl", 1, kappa=None, accuracy=0.9),
        _run(folder, "eyeq", "lq70", "comcl", 0, kappa=0.25, accuracy=0.75),
    ]


EXPECTED_TABLE1 = """\
## Table 1: Comparison with supervised and contrastive methods

### EyeQ

| Group | Method | Original: Kappa (ours) | Original: Kappa (paper) | Original: ACC (ours) | Original: ACC (paper) | 70 % low quality: Kappa (ours) | 70 % low quality: Kappa (paper) | 70 % low quality: ACC (ours) | 70 % low quality: ACC (paper) |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| Supervised | ResNet-50 † | 0.600 ± 0.141 | 0.804 | 0.700 ± 0.141 | 0.783 | – | 0.743 | – | 0.715 |
|  | Inception-v3 | – | 0.798 | – | 0.776 | – | 0.728 | – | 0.706 |
|  | DenseNet-121 | – | 0.813 | – | 0.794 | – | 0.756 | – | 0.732 |
|  | MMCNN (paper only) |  | 0.862 |  | 0.841 |  | 0.795 |  | 0.778 |
|  | Zoom-in-Net (paper only) |  | 0.873 |  | 0.854 |  | 0.812 |  | 0.784 |
|  | CABNet (paper only) |  | 0.865 |  | 0.847 |  | 0.797 |  | 0.782 |
|  | DeepMT-DR (paper only) |  | 0.857 |  | 0.839 |  | 0.791 |  | 0.768 |
|  | LANet (paper only) |  | 0.854 |  | 0.835 |  | 0.786 |  | 0.765 |
| Contrastive | Basic CL | – | – | – | – | – | – | – | – |
|  | Lesion-based CL | – | 0.848 | – | 0.832 | – | 0.783 | – | 0.761 |
|  | Lesion-aware CL (paper only) |  | 0.876 |  | 0.857 |  | 0.824 |  | 0.816 |
|  | CoMCL | n/d | 0.884 | 0.850 ± 0.071 | 0.872 | 0.250 | 0.852 | 0.750 | 0.837 |

- ours: mean ± std over 2 seeds; paper: published numbers on record, – where none.
- † from scratch: ImageNet weights could not be fetched, or pretrain.init is scratch
- n/d: undefined (e.g. a constant prediction)
- (paper only): a method this project does not implement; the paper's numbers only
- Configuration: seeds 0, 1; fine-tuning 5 epochs, input 224 px, batch 8, sgd lr 0.001 cosine, grading by grade regression (MSE), class-balanced sampling; \
pretraining resnet50, 10 epochs, batch 32, views 128 px.
- EyeQ: root data/eyeq; split sizes train 144, val 16, test 80.
"""


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    folder = tmp_path / "tables"
    write_tables(_fixture_runs(tmp_path), {"comcl": COMCL}, CONTEXT, folder)
    return folder


def test_writes_every_table_in_every_format(tables: Path) -> None:
    expected = {f"{table}.{form}" for table in TABLES for form in FORMATS} | {"per_class_eyeq.csv"}
    assert {path.name for path in tables.iterdir()} == expected


def test_markdown_is_exact(tables: Path) -> None:
    assert (tables / "table1.md").read_text() == EXPECTED_TABLE1


def test_latex_lines(tables: Path) -> None:
    lines = (tables / "table1.tex").read_text().splitlines()
    for line in (
        r"\begin{tabular}{lcccccccc}",
        r"\toprule",
        r" & \multicolumn{4}{c}{Original} & \multicolumn{4}{c}{70 \% low quality} \\",
        r"\cmidrule(lr){2-5} \cmidrule(lr){6-9}",
        r"Method & ours & paper & ours & paper & ours & paper & ours & paper \\",
        r"\multicolumn{9}{l}{\textit{Supervised}} \\",
        r"ResNet-50 $^\dagger$ & 0.600 $\pm$ 0.141 & 0.804 & 0.700 $\pm$ 0.141 & 0.783 & -- & 0.743 & -- & 0.715 \\",
        r"Lesion-aware CL (paper only) &  & 0.876 &  & 0.857 &  & 0.824 &  & 0.816 \\",
        r"CoMCL & n/d & 0.884 & 0.850 $\pm$ 0.071 & 0.872 & 0.250 & 0.852 & 0.750 & 0.837 \\",
        r"\bottomrule",
        r"$^\dagger$ from scratch: ImageNet weights could not be fetched, or pretrain.init is scratch\par",
    ):
        assert line in lines
    table3 = (tables / "table3.tex").read_text()
    assert r"Method & $(L, \tilde{L})$ & $(L, H)$ & $(\tilde{L}, \tilde{H})$ & ours & paper" in table3
    assert r"CoMCL\_v3 = CoMCL & \checkmark & \checkmark & \checkmark & n/d & 0.884" in table3


def test_mean_and_std_are_numpys(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((3, 2))
    runs = [_run(tmp_path, "eyeq", "original", "comcl", seed, kappa=k, accuracy=a) for seed, (k, a) in enumerate(values)]
    write_tables(runs, {"comcl": COMCL}, {**CONTEXT, "seeds": [0, 1, 2]}, tmp_path / "tables")
    table = pd.read_csv(tmp_path / "tables" / "table1.csv")
    summary = table[(table["method"] == "comcl") & (table["version"] == "original")].set_index("metric")
    for column, metric in enumerate(("kappa", "accuracy")):
        mean, std = np.mean(values[:, column]), np.std(values[:, column], ddof=1)
        assert summary.loc[metric, "mean"] == pytest.approx(mean)
        assert summary.loc[metric, "std"] == pytest.approx(std)
        assert (summary.loc[metric, "seeds"], summary.loc[metric, "defined"]) == (3, 3)
    row = next(line for line in (tmp_path / "tables" / "table1.md").read_text().splitlines() if "| CoMCL |" in line)
    assert f"{np.mean(values[:, 0]):.3f} ± {np.std(values[:, 0], ddof=1):.3f}" in row
    assert f"{np.mean(values[:, 1]):.3f} ± {np.std(values[:, 1], ddof=1):.3f}" in row


def test_undefined_metrics_are_nd_and_never_nan(tmp_path: Path) -> None:
    context = {**CONTEXT, "datasets": {**CONTEXT["datasets"], "chestxray14": {"format": "chestxray14", "root": "data/chest"}}}
    runs = [
        *_fixture_runs(tmp_path),
        _run(tmp_path, "eyeq", "lq70", "resnet50", 0, kappa=None, accuracy=None, init="imagenet"),
        _run(tmp_path, "chestxray14", "original", "comcl", 0, kappa=None, accuracy=0.9, auroc=None, task="multilabel"),
        _run(tmp_path, "chestxray14", "original", "comcl", 1, kappa=0.1, accuracy=0.8, auroc=None, task="multilabel"),
    ]
    folder = tmp_path / "tables"
    write_tables(runs, {"comcl": COMCL}, context, folder)
    table = pd.read_csv(folder / "table1.csv").set_index(["dataset", "version", "method", "metric"])
    assert table.loc[("chestxray14", "original", "comcl", "auroc"), ["seeds", "defined"]].tolist() == [2, 0]
    assert table.loc[("chestxray14", "original", "comcl", "kappa"), ["seeds", "defined"]].tolist() == [2, 1]
    assert table.loc[("eyeq", "lq70", "resnet50", "kappa"), ["seeds", "defined"]].tolist()[1] < 2
    for path in folder.iterdir():
        assert not re.search(r"\bnan\b", path.read_text(), re.IGNORECASE), path.name
    markdown = (folder / "table1.md").read_text()
    assert "| ResNet-50 † | 0.600 ± 0.141 | 0.804 | 0.700 ± 0.141 | 0.783 | n/d | 0.743 | n/d | 0.715 |" in markdown
    assert "| CoMCL | 0.100 | 0.682 | 0.850 ± 0.071 | 0.708 | n/d | – |" in markdown  # chest: one kappa, no AUC defined
    assert "n/d: undefined (e.g. a constant prediction)" in markdown
    chest = pd.read_csv(folder / "per_class_chestxray14.csv")
    assert chest.columns.tolist() == ["version", "method", "label", "kappa", "accuracy", "auroc", "support"]
    assert chest.loc[0, "kappa"] == pytest.approx(0.1) and pd.isna(chest.loc[0, "auroc"])


def test_paper_only_row_shows_the_paper_only(tables: Path) -> None:
    markdown = (tables / "table1.md").read_text()
    assert "|  | Lesion-aware CL (paper only) |  | 0.876 |  | 0.857 |  | 0.824 |  | 0.816 |" in markdown
    csv = pd.read_csv(tables / "table1.csv", keep_default_na=False)
    row = csv[(csv["row"] == "Lesion-aware CL") & (csv["version"] == "original")]
    assert row["source"].tolist() == ["paper", "paper"] and row["method"].tolist() == ["", ""]
    assert row["mean"].tolist() == ["", ""] and row["seeds"].tolist() == ["", ""]
    assert row["paper"].astype(float).tolist() == [0.876, 0.857]
    html = (tables / "table1.html").read_text()
    assert '<tr><td>Lesion-aware CL (paper only)</td><td class="num"></td><td class="num">0.876</td>' in html


def test_tidy_csv(tables: Path) -> None:
    csv = pd.read_csv(tables / "table1.csv")
    assert csv.columns.tolist() == [
        "table", "dataset", "version", "group", "row", "method", "source", "metric", "mean", "std", "seeds", "defined", "paper", "init",
    ]  # fmt: skip
    assert len(csv) == 12 * 2 * 2  # rows x versions x metrics
    kappa = csv[(csv["method"] == "resnet50") & (csv["version"] == "original") & (csv["metric"] == "kappa")].iloc[0]
    assert (kappa["mean"], kappa["std"]) == (pytest.approx(0.6), pytest.approx(np.std([0.5, 0.7], ddof=1)))
    assert (kappa["seeds"], kappa["defined"], kappa["paper"], kappa["init"]) == (2, 2, 0.804, "scratch")
    undefined = csv[(csv["method"] == "comcl") & (csv["version"] == "original") & (csv["metric"] == "kappa")].iloc[0]
    assert (undefined["seeds"], undefined["defined"]) == (2, 0) and pd.isna(undefined["mean"])


def test_table3_marks_follow_the_variants(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, "eyeq", "original", method, 0, kappa=0.3, accuracy=0.6) for method in ("comcl_v1", "comcl_v2", "comcl")
    ]
    # v1 as defined here (not as in the paper) trains (L, L~) only; the merged groups of v3 match no single-level pair.
    variants = {
        "comcl_v1": {"name": "CoMCL_v1", "groups": {"L": ["L"], "L~": ["L~"]}, "pairs": [["L", "L~"]]},
        "comcl": {"name": "CoMCL", "groups": {"lesion": ["L", "L~"], "healthy": ["H", "H~"]}, "pairs": [["lesion", "healthy"]]},
    }
    write_tables(runs, variants, CONTEXT, tmp_path / "tables")
    markdown = (tmp_path / "tables" / "table3.md").read_text()
    assert "| Group | Method | (L, L~) | (L, H) | (L~, H~) | Original: Kappa (ours) | Original: Kappa (paper) |" in markdown
    assert "70 % low quality" not in markdown.split("- ours")[0]  # no results nor paper numbers there
    assert "| Level pairs | CoMCL_v1 | ✓ |  |  | 0.300 | 0.846 |" in markdown
    assert "|  | CoMCL_v2 |  |  |  | 0.300 | 0.867 |" in markdown  # not among the variants: no marks
    assert "|  | CoMCL_v3 = CoMCL |  |  |  | 0.300 | 0.884 |" in markdown
    write_tables(runs, {"comcl_v1": variants["comcl_v1"], "comcl": COMCL}, CONTEXT, tmp_path / "tables")
    assert r"CoMCL\_v3 = CoMCL & \checkmark & \checkmark & \checkmark & 0.300" in (tmp_path / "tables" / "table3.tex").read_text()


def test_the_ablation_shows_the_versions_where_its_rows_compare(tmp_path: Path) -> None:
    runs = [_run(tmp_path, "eyeq", version, "comcl", 0, kappa=0.3, accuracy=0.6) for version in ("original", "lq70")]
    runs.append(_run(tmp_path, "eyeq", "original", "comcl_wo_spl", 0, kappa=0.2, accuracy=0.5))
    write_tables(runs, {"comcl": COMCL}, CONTEXT, tmp_path / "tables")
    table2 = (tmp_path / "tables" / "table2.md").read_text().split("- ours")[0]
    assert "Original: Kappa (ours)" in table2 and "70 % low quality" not in table2  # CoMCL alone ran there
    assert "70 % low quality" in (tmp_path / "tables" / "table1.md").read_text()


def test_unlisted_methods_are_appended_to_table1(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, "eyeq", "original", "resnet18", 0, kappa=0.4, accuracy=0.5, init="imagenet"),
        _run(tmp_path, "eyeq", "original", "my_cl", 0, kappa=0.45, accuracy=0.55),
    ]
    write_tables(runs, {"my_cl": {"name": "My CL", "pairs": [["L", "H"]]}}, CONTEXT, tmp_path / "tables")
    lines = (tmp_path / "tables" / "table1.md").read_text().splitlines()
    labels = [line.split(" | ")[1] for line in lines if line.startswith("| ") and " | " in line][2:]
    assert labels[labels.index("LANet (paper only)") + 1] == "ResNet-18"  # last of the supervised group
    assert labels[-1] == "My CL"
    assert "|  | ResNet-18 | 0.400 | – | 0.500 | – | – | – | – | – |" in lines
    assert "from scratch" not in "\n".join(lines)  # ImageNet-initialised: no dagger


def _pretraining(folder: Path, version: str, init: str, pairs: list, left_out: list) -> str:
    path = folder / "results" / "eyeq" / version / "pretrain" / "comcl" / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"variant": "CoMCL", "init": init, "pairs": pairs, "pairs_without_images": left_out}))
    return str(path)


def test_one_start_for_every_method_is_said_once_and_a_mixed_start_marks_the_rows(tmp_path: Path) -> None:
    pairs = [["L", "L~"], ["L", "H"], ["L~", "H~"]]
    encoder = dict(_run(tmp_path, "eyeq", "original", "comcl", 0, kappa=0.3, accuracy=0.6))
    encoder["pretraining"] = _pretraining(tmp_path, "original", "imagenet", pairs, [])
    runs = [_run(tmp_path, "eyeq", "original", "resnet50", 0, kappa=0.4, accuracy=0.5, init="imagenet"), encoder]
    write_tables(runs, {"comcl": COMCL}, CONTEXT, tmp_path / "tables")
    text = (tmp_path / "tables" / "table1.md").read_text()
    assert "Start: every method from ImageNet weights" in text and DAGGER not in text

    # The encoder's pretraining started from scratch while the baseline had ImageNet: a dagger on CoMCL only.
    encoder["pretraining"] = _pretraining(tmp_path, "original", SCRATCH, pairs, [])
    write_tables(runs, {"comcl": COMCL}, CONTEXT, tmp_path / "tables")
    text = (tmp_path / "tables" / "table1.md").read_text()
    assert "Start:" not in text and f"| CoMCL {DAGGER} |" in text and f"ResNet-50 {DAGGER}" not in text
    csv = pd.read_csv(tmp_path / "tables" / "table1.csv")
    assert set(csv.loc[csv["method"] == "comcl", "init"].dropna()) == {"scratch"}


def test_cells_of_pretrainings_that_left_pairs_out_say_which_pairs_trained(tmp_path: Path) -> None:
    runs = []
    for version, left_out in (("original", []), ("lq100", [["L", "L~"], ["L", "H"]])):
        run = dict(_run(tmp_path, "eyeq", version, "comcl", 0, kappa=0.3, accuracy=0.6))
        trained = [["L~", "H~"]] if left_out else [["L", "L~"], ["L", "H"], ["L~", "H~"]]
        run["pretraining"] = _pretraining(tmp_path, version, "imagenet", trained, left_out)
        runs.append(run)
    write_tables(runs, {"comcl": COMCL}, CONTEXT, tmp_path / "tables")
    lines = (tmp_path / "tables" / "table1.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("|  | CoMCL |"))
    assert row.count(DDAGGER) == 2  # the lq100 Kappa and ACC cells, not the original's
    assert (
        f"- {DDAGGER} trained on the level pairs that have images at this proportion only: CoMCL on EyeQ 100 % low quality: (L~, H~)"
        in lines
    )
    assert r"$^\ddagger$" in (tmp_path / "tables" / "table1.tex").read_text()


def test_missing_or_malformed_metrics_raise_data_error(tmp_path: Path) -> None:
    runs = _fixture_runs(tmp_path)
    missing = Path(runs[2]["metrics"])
    missing.unlink()
    with pytest.raises(DataError, match="rerun the fine-tuning of eyeq/original/comcl seed 0") as error:
        write_tables(runs, {}, CONTEXT, tmp_path / "tables")
    assert error.value.path == missing and str(missing) in str(error.value)
    assert not (tmp_path / "tables").exists()
    missing.write_text('{"task": "grading", "test": {}}')
    with pytest.raises(DataError, match="malformed") as error:
        write_tables(runs, {}, CONTEXT, tmp_path / "tables")
    assert error.value.path == missing


def test_sizes_per_version_when_they_differ(tmp_path: Path) -> None:
    runs = _fixture_runs(tmp_path)
    path = Path(runs[-1]["metrics"])
    path.write_text(path.read_text().replace('"train": 144', '"train": 100'))
    write_tables(runs, {}, CONTEXT, tmp_path / "tables")
    expected = (
        "- EyeQ: root data/eyeq; split sizes Original: train 144, val 16, test 80; 70 % low quality: train 100, val 16, test 80."
    )
    assert expected in (tmp_path / "tables" / "table2.md").read_text().splitlines()


def test_per_class_means_over_seeds(tables: Path) -> None:
    frame = pd.read_csv(tables / "per_class_eyeq.csv")
    assert frame.columns.tolist() == ["version", "method", "class", "precision", "recall", "support"]
    resnet = frame[(frame["method"] == "resnet50") & (frame["class"] == 0)].iloc[0]
    assert (resnet["version"], resnet["precision"], resnet["recall"], resnet["support"]) == (
        "original",
        pytest.approx(0.55),
        1.0,
        3,
    )
    assert frame[frame["class"] == 1]["precision"].isna().all()
    assert frame["version"].tolist()[-2:] == ["lq70", "lq70"]


def test_published_numbers_are_the_papers_on_record() -> None:
    """Every number on record lies under a table, a dataset, a version and a row of that table, with the metrics the
    paper gives: a label misspelt in either place would leave the row's paper cells "–". The numbers themselves are
    checked against the paper in test_published.py."""
    layout = yaml.safe_load(resources.files("comcl.report").joinpath("published.yaml").read_text(encoding="utf-8"))
    assert set(layout["published"]) == set(TABLES)
    for table, datasets in layout["published"].items():
        rows = {row.get("published_as", row["label"]) for group in layout["tables"][table]["groups"] for row in group["rows"]}
        for dataset, versions in datasets.items():
            assert dataset in layout["datasets"]
            for version, entries in versions.items():
                assert version in layout["versions"]
                assert set(entries) <= rows, (table, dataset, version, set(entries) - rows)
                assert all(set(metrics) == {"kappa", "accuracy"} for metrics in entries.values()), (table, dataset, version)


def test_without_results_the_tables_show_the_layout(tmp_path: Path) -> None:
    context = {**CONTEXT, "datasets": {**CONTEXT["datasets"], "chestxray14": {"format": "chestxray14", "root": "data/chest"}}}
    write_tables([], {}, context, tmp_path / "tables")
    markdown = (tmp_path / "tables" / "table2.md").read_text()
    assert "|  | CoMCL | – | 0.884 | – | 0.872 |" in markdown  # only the paper's numbers; versions: those with any
    assert "|  | CoMCL w/o SPL | – | 0.868 | – | 0.860 |" in markdown
    assert "| Ablation | Baseline (ResNet-50) | – | – | – | – | – | – |" in markdown  # chest: its format's three metrics
    assert "- EyeQ: root data/eyeq; split sizes no results yet." in markdown
    assert (
        tmp_path / "tables" / "per_class_chestxray14.csv"
    ).read_text() == "version,method,label,kappa,accuracy,auroc,support\n"


def test_the_note_says_how_many_boxed_images_left_the_test_split(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"boxed_test_images_removed": 24}))
    runs = [_run(tmp_path, "eyeq", "original", "resnet50", 0, kappa=0.4, accuracy=0.5, init="imagenet")]
    write_tables(runs, {}, CONTEXT, tmp_path / "tables", indexes={"eyeq": summary})
    assert "24 test images of its box list left the test split" in (tmp_path / "tables" / "table1.md").read_text()


def test_the_notes_state_the_resolved_configuration_and_name_its_file(tmp_path: Path) -> None:
    resolved = {
        "datasets": {"eyeq": {"format": "eyeq", "root": "data/eyeq", "labels": {"train": "x.csv"}}},
        "finetune": {**CONTEXT["finetune"], "seeds": [0, 1], "weight_decay": 0.1},
        "pretrain": {**CONTEXT["pretrain"], "queue_size": 4096},
    }
    context = table_context(resolved, ["original", "lq70"], "results/mine/config.yaml")
    assert {key: value for key, value in context.items() if key != "file"} == CONTEXT
    write_tables(_fixture_runs(tmp_path), {"comcl": COMCL}, context, tmp_path / "tables")
    assert "Every setting: results/mine/config.yaml." in (tmp_path / "tables/table1.md").read_text()


def test_the_notes_give_each_pretrainings_steps_and_say_when_the_budgets_differ(tmp_path: Path) -> None:
    variants = {"comcl": COMCL, "basic_cl": {"name": "Basic CL", "pairs": [["all", "all"]]}}

    def runs(steps: dict[str, int]) -> list[dict[str, Any]]:
        made = []
        for method, count in steps.items():
            run = dict(_run(tmp_path, "eyeq", "original", method, 0, kappa=0.3, accuracy=0.6))
            summary = tmp_path / "results" / "eyeq" / "original" / "pretrain" / method / "summary.json"
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(
                json.dumps({"variant": method, "init": "scratch", "steps": count, "pairs": [], "pairs_without_images": []})
            )
            made.append({**run, "pretraining": str(summary)})
        return made

    write_tables(runs({"comcl": 99, "basic_cl": 36}), variants, CONTEXT, tmp_path / "tables")
    text = (tmp_path / "tables" / "table1.md").read_text()
    assert "Pretraining steps (not equal budgets; pretrain.steps sets one): CoMCL 99, Basic CL 36." in text
    write_tables(
        runs({"comcl": 240, "basic_cl": 240}),
        variants,
        {**CONTEXT, "pretrain": {**CONTEXT["pretrain"], "steps": 240}},
        tmp_path / "tables",
    )
    text = (tmp_path / "tables" / "table1.md").read_text()
    assert "Pretraining: every encoder 240 optimiser steps." in text and "240 steps each" in text


def test_the_workflow_plans_the_tables_the_report_writes():
    assert plan.TABLES == TABLES
