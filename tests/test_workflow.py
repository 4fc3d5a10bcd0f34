"""Snakemake end to end on a tiny configuration: synthesize -> patch store, caching, and the linter."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from snakemake.utils import validate

from comcl.datasets import chestxray14 as nih
from comcl.download import md5sum
from comcl.io import read_table
from comcl.patches.store import PatchDataset
from tests.conftest import REPO
from tests.tiny_workflow import SNAKEMAKE, TINY, over_the_demo, planned_jobs, planned_wildcards, resolved, snakemake

# The costly stages, upstream first: a change reruns the stage it configures and what reads it, never one before it.
STAGES = (
    "synthesize",
    "fetch_dataset",
    "fetch_lesions",
    "preprocess",
    "index",
    "degrade",
    "lesion_annotations",
    "train_detector",
    "detect",
    "patches",
    "pretrain",
    "finetune",
)
# What shows or measures the data stages: the degradations' and patches' figures, the lesion levels against the boxes.
SHOWN = {"degradation_gallery", "patch_figures", "lesion_truth"}
# What reads the encoders and the fine-tunings: the report's tables and figures.
REPORT = {"finetune_figures", "tsne", "gradcam", "linear_eval", "linear_table", "comparisons", "tables"}
# None of them names the bookkeeping (resolved_config, benchmark_summary, all), which any change reruns.


def upstream(stage: str) -> set[str]:
    """The stages upstream of ``stage``: an expensive, wrong rerun for a change of it."""
    return set(STAGES[: STAGES.index(stage)])


def reruns(jobs: dict[str, int], must: Iterable[str] = (), must_not: Iterable[str] = ()) -> None:
    """A dry run's plan holds every rule of ``must`` and none of ``must_not``; other rules (a new helper) may come."""
    missing, wrong = sorted(set(must) - set(jobs)), sorted(set(must_not) & set(jobs))
    assert not missing and not wrong, f"not planned: {missing}; planned though it must not rerun: {wrong}; plan: {jobs}"


def versions(config: dict) -> list[str]:
    """A dataset's versions: the original, then one per degraded proportion (lq70 for 0.7)."""
    return ["original", *(f"lq{round(share * 100)}" for share in config["degrade"]["proportions"])]


def pretrainings(config: dict) -> set[tuple[str, str]]:
    """A dataset's (version, variant) pretrainings: each variant of `pretrain.runs` on each of its versions."""
    return {
        (version, variant) for run in config["pretrain"]["runs"] for version in run["versions"] for variant in run["variants"]
    }


def finetunings(config: dict) -> int:
    """A dataset's fine-tuning jobs: every baseline on every version and every pretrained encoder, each seed."""
    baselines = {(version, method) for version in versions(config) for method in config["finetune"]["baselines"]}
    return len(config["finetune"]["seeds"]) * len(baselines | pretrainings(config))


def reads_patches(variant: str) -> bool:
    """Whether a pretraining variant reads the patch store (CoMCL) rather than whole images (Basic CL)."""
    return yaml.safe_load((REPO / f"config/pretrain/{variant}.yaml").read_text())["source"] == "patches"


def where(output: str, rule: str, *keys: str) -> set[tuple[str, ...]]:
    """The values of ``keys`` in the wildcards of each job of ``rule`` that a dry run plans."""
    return {tuple(wildcards[key] for key in keys) for name, wildcards in planned_wildcards(output) if name == rule}


@pytest.fixture(scope="module")
def workdir(tiny_run) -> Path:
    return tiny_run.workdir


@pytest.mark.workflow
def test_the_default_target_builds_datasets_sheets_indexes_detectors_and_patch_stores(workdir):
    for name in ("eyeq", "idrid", "chestxray14"):
        assert (workdir / f"out/figures/contact_sheet_{name}.png").stat().st_size > 10_000
        assert (workdir / f"out/logs/synthesize/{name}.log").exists()
        assert (workdir / f"out/benchmarks/synthesize/{name}.tsv").exists()
    assert (workdir / "out/synthetic/idrid/A. Segmentation").is_dir()
    eyeq, meta = read_table(workdir / "out/eyeq/original/index.parquet")
    assert len(eyeq) == 14 and meta["dataset"] == "eyeq"
    chest, meta = read_table(workdir / "out/chestxray14/original/index.parquet")
    assert meta["task"] == "multilabel" and set(chest["split"]) == {"train", "val", "test"}
    assert chest["path"].map(lambda p: (workdir / p).is_file()).all()
    for dataset in ("eyeq", "chestxray14"):
        assert (workdir / f"out/figures/degradations_{dataset}.png").stat().st_size > 10_000
        for proportion, share in (("lq70", 0.7), ("lq100", 1.0)):
            frame, meta = read_table(workdir / f"out/{dataset}/{proportion}/index.parquet")
            assert meta["proportion"] == proportion
            for _, part in frame.groupby("split"):
                assert (part["quality"] == "low").sum() == round(share * len(part))
            assert frame["path"].map(lambda p: (workdir / p).is_file()).all()
        metrics = json.loads((workdir / f"out/{dataset}/detector/metrics.json").read_text())
        assert 0 <= metrics["mAP"] <= 1
        for version in ("original", "lq70", "lq100"):
            index, _ = read_table(workdir / f"out/{dataset}/{version}/index.parquet")
            store = PatchDataset(workdir / f"out/{dataset}/{version}/patches.parquet")
            summary = json.loads((workdir / f"out/{dataset}/{version}/patches.json").read_text())
            assert len(store) == summary["patches"] > 0
            healthy = index[index["level"].isin(["H", "H~"])]
            assert set(healthy["image_id"]) <= set(store.index["image_id"])  # 64 px images: always room for 16 px windows
            assert store[0].shape == (16, 16, 3 if dataset == "eyeq" else 1)
            assert store.metadata["input_size"] == summary["input_size"] == TINY["finetune"]["input_size"]
            for kind in ("windows", "mosaic"):
                assert (workdir / f"out/figures/patch_{kind}_{dataset}_{version}.png").stat().st_size > 10_000
        encoder = torch.load(workdir / f"out/{dataset}/original/pretrain/basic_cl/encoder.pt", weights_only=True)
        assert "conv1.weight" in encoder
        assert (workdir / f"out/figures/pretrain_{dataset}_original_basic_cl.png").stat().st_size > 10_000
        metrics = json.loads((workdir / f"out/{dataset}/original/finetune/basic_cl/seed0/metrics.json").read_text())
        assert metrics["init"].startswith("encoder") and metrics["task"] == ("grading" if dataset == "eyeq" else "multilabel")


def detector_images(annotations: Path) -> set[str]:
    """The image ids (file names without extension) of a detector's COCO train and test files."""
    files = [json.loads((annotations / f"{split}.json").read_text()) for split in ("train", "test")]
    return {Path(image["file_name"]).stem for coco in files for image in coco["images"]}


@pytest.mark.workflow
def test_no_evaluation_image_reaches_the_detector_the_patch_levels_or_pretraining(workdir):
    for dataset in ("eyeq", "chestxray14"):
        index, _ = read_table(workdir / f"out/{dataset}/original/index.parquet")
        val = set(index.loc[index["split"] == "val", "image_id"])
        held_out = val | set(index.loc[index["split"] == "test", "image_id"])
        assert val and held_out - val
        annotations = workdir / f"out/{dataset}/detector/annotations"
        assert detector_images(annotations) and not detector_images(annotations) & held_out
        assert set(json.loads((annotations / "summary.json").read_text())["excluded_evaluation_images"]) == {"val", "test"}
        for version in ("original", "lq70", "lq100"):
            store = PatchDataset(workdir / f"out/{dataset}/{version}/patches.parquet").index
            assert not set(store.loc[store["split"] == "train", "image_id"]) & held_out
            assert (store.loc[store["image_id"].isin(val), "split"] == "val").all()
        # Pretraining reads the train split (pretrain.split): every training image or patch, and nothing else.
        store = PatchDataset(workdir / f"out/{dataset}/original/patches.parquet").index
        pretrained = {
            name: json.loads((workdir / f"out/{dataset}/original/pretrain/{name}/summary.json").read_text())["groups"]
            for name in ("basic_cl", "comcl")
        }
        assert pretrained["basic_cl"] == {"image": int((index["split"] == "train").sum())}
        train_patches = store.loc[store["split"] == "train", "level"].value_counts()
        assert pretrained["comcl"] == {level: int(train_patches[level]) for level in pretrained["comcl"]}


@pytest.mark.workflow
def test_the_boxed_chest_test_images_left_the_index_for_the_detector(workdir):
    index, meta = read_table(workdir / "out/chestxray14/original/index.parquet")
    summary = json.loads((workdir / "out/chestxray14/original/summary.json").read_text())
    root = workdir / "out/synthetic/chestxray14"
    boxed = set(nih.read_bbox_list(root / nih.BBOX_FILE)["image"].str.removesuffix(".png"))
    listed_test = set(nih.read_split_list(root / nih.SPLIT_FILES["test"]))
    removed = {name.removesuffix(".png") for name in listed_test} & boxed
    assert removed and meta["boxed_test_images_removed"] == summary["boxed_test_images_removed"] == len(removed)
    assert not removed & set(index["image_id"])
    annotations = workdir / "out/chestxray14/detector/annotations"
    assert removed <= detector_images(annotations), "they train the detector"
    assert index.loc[index["split"] == "test", "lesion"].any(), "the test split keeps diseased images (Grad-CAM needs them)"


@pytest.mark.workflow
def test_the_run_ends_with_the_three_tables_the_figures_and_a_report(workdir):
    for table in ("table1", "table2", "table3"):
        for ext in ("csv", "md", "tex", "html"):
            text = (workdir / f"out/tables/{table}.{ext}").read_text()
            assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE), f"{table}.{ext}"
    table1 = (workdir / "out/tables/table1.md").read_text()
    assert "| Basic CL |" in table1 and "CoMCL" in table1 and "MMCNN (paper only)" in table1
    table3 = pd.read_csv(workdir / "out/tables/table3.csv")
    assert set(table3.loc[table3["method"] == "comcl", "version"]) == {"original"}
    for dataset in ("eyeq", "chestxray14"):
        for figure in ("finetune", "outcomes", "tsne", "gradcam"):
            assert (workdir / f"out/figures/{figure}_{dataset}_original.png").stat().st_size > 10_000
        tsne = json.loads((workdir / f"out/{dataset}/original/tsne.json").read_text())
        assert set(tsne) == {"Basic CL", "CoMCL"}
        assert (workdir / f"out/{dataset}/original/finetune/comcl/seed0/model.pt").is_file()
    summary = pd.read_csv(workdir / "out/benchmarks/summary.csv")
    assert {"train_detector", "pretrain", "finetune", "tables"} <= set(summary["stage"])
    snakemake(workdir, "--report", "report.html")
    report = (workdir / "report.html").read_text()
    assert "table1.html" in report and "gradcam_eyeq_original.png" in report and "config.yaml" in report
    resolved = yaml.safe_load((workdir / "out/config.yaml").read_text())
    assert (
        resolved["finetune"]["input_size"] == TINY["finetune"]["input_size"] and resolved["detect"]["batch_size"] == 8
    )  # the demo's
    assert "Every setting: out/config.yaml." in table1


@pytest.mark.workflow
def test_the_linear_evaluation_and_the_paired_comparisons_cover_every_encoder(workdir):
    linear = pd.read_csv(workdir / "out/tables/linear_eval.csv")
    assert set(linear["method"]) == {"start", "basic_cl", "comcl"} and set(linear["dataset"]) == {"eyeq", "chestxray14"}
    assert "| Random weights |" in (workdir / "out/tables/linear_eval.md").read_text()
    comparisons = pd.read_csv(workdir / "out/tables/comparisons.csv")
    pairs = set(comparisons[["protocol", "method"]].itertuples(index=False, name=None))
    assert pairs == {("fine-tuning", "basic_cl"), ("linear evaluation", "start"), ("linear evaluation", "basic_cl")}
    assert (comparisons["reference"] == "comcl").all() and (comparisons["low"] <= comparisons["high"]).all()
    assert "CoMCL − Basic CL" in (workdir / "out/tables/comparisons.md").read_text()


def _same(frame: pd.DataFrame, other: pd.DataFrame) -> bool:
    """Equal tables, up to the results folder's name in the paths they hold."""
    return frame.replace(r"^out/", "again/", regex=True).equals(other)


@pytest.mark.workflow
def test_a_rerun_with_other_cores_gives_the_same_detections_patches_encoders_and_fine_tunings(workdir):
    """The tiny run had --cores 2; the EyeQ chain again from nothing with --cores 1, its PyTorch jobs at the
    configured two threads, into a results folder of its own."""
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["results"] = "again"
    for dataset in config["datasets"].values():
        dataset["root"] = dataset["root"].replace("out/", "again/", 1)
    config["detector"]["annotations"]["eyeq"]["root"] = "again/synthetic/idrid"
    (workdir / "again.yaml").write_text(yaml.safe_dump(config))
    targets = ["again/eyeq/original/finetune/comcl/seed0/metrics.json", "again/eyeq/original/pretrain/basic_cl/encoder.pt"]
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1", *targets]
    result = subprocess.run([*command, *over_the_demo(workdir / "again.yaml")], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    for table in ("eyeq/original/detections.parquet", "eyeq/original/patches.parquet"):
        assert _same(read_table(workdir / "out" / table)[0], read_table(workdir / "again" / table)[0]), table
    for encoder in ("basic_cl", "comcl"):
        first, second = (
            torch.load(workdir / f"{r}/eyeq/original/pretrain/{encoder}/encoder.pt", weights_only=True) for r in ("out", "again")
        )
        assert all(torch.equal(first[key], second[key]) for key in first), encoder
    first, second = (
        json.loads((workdir / f"{r}/eyeq/original/finetune/comcl/seed0/metrics.json").read_text()) for r in ("out", "again")
    )
    assert first["test"] == second["test"] and first["history"] == second["history"]
    shutil.rmtree(workdir / "again")


@pytest.mark.workflow
def test_nothing_reruns_when_nothing_changed(workdir):
    assert planned_jobs(snakemake(workdir, "-n")) == {}


@pytest.mark.workflow
def test_an_index_config_change_reruns_the_index_rules_and_what_depends_on_them(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["index"]["check_images"] = "decode"
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "-n"))
    # The detector's boxes wait for the index: its val and test images never train the detector.
    downstream = {"degrade", "lesion_annotations", "train_detector", "detect", "patches", "pretrain", "finetune"}
    reruns(jobs, must={"index", *downstream, *SHOWN, *REPORT}, must_not=upstream("index"))
    # Every dataset's index, and with them every encoder and every fine-tuning.
    tiny, datasets = resolved(config), len(config["datasets"])
    assert (jobs["index"], jobs["pretrain"], jobs["finetune"]) == (
        datasets,
        datasets * len(pretrainings(tiny)),
        datasets * finetunings(tiny),
    )
    before = (workdir / "out/figures/contact_sheet_eyeq.png").stat().st_mtime_ns
    snakemake(workdir)
    assert (workdir / "out/figures/contact_sheet_eyeq.png").stat().st_mtime_ns == before
    assert planned_jobs(snakemake(workdir, "-n")) == {}


@pytest.mark.workflow
def test_a_synthetic_config_change_reruns_that_dataset_and_its_index(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["synthetic"]["chestxray14"]["n_patients"] = 13
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "-n")
    # The IDRiD boxes of EyeQ's detector are not ChestX-ray14's: their fetch stays.
    reruns(planned_jobs(output), must={*STAGES, *SHOWN, *REPORT} - {"fetch_lesions", "preprocess"}, must_not={"fetch_lesions"})
    # Every job of a dataset (its wildcard `dataset`, or `name` for the generator) is ChestX-ray14's.
    named = {wildcards.get("dataset", wildcards.get("name")) for _, wildcards in planned_wildcards(output)}
    assert named - {None} == {"chestxray14"}


@pytest.mark.workflow
def test_a_new_proportion_adds_its_jobs_and_a_table_column_and_reruns_nothing_else(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["synthetic"]["chestxray14"]["n_patients"] = 12
    config["degrade"] = {"proportions": [0.7, 0.85, 1.0]}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "-n")
    # Table 1 gains the new version's column, the comparisons its test labels; no encoder trains on lq85.
    reruns(
        planned_jobs(output),
        must={"degrade", "detect", "patches", "comparisons", "tables"},
        must_not=upstream("degrade")
        | {"lesion_annotations", "train_detector", "pretrain", "finetune"}
        | (REPORT - {"comparisons", "tables"}),
    )
    # The new version's data stages, on every dataset, and no other version's.
    new = {(dataset, "lq85") for dataset in config["datasets"]}
    assert where(output, "degrade", "dataset", "proportion") == new
    assert where(output, "detect", "dataset", "version") == where(output, "patches", "dataset", "version") == new


@pytest.mark.workflow
def test_a_patch_config_change_reruns_only_the_patch_stage(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["degrade"] = {"proportions": [0.7, 1.0]}
    config["patches"]["k"] = 3
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "-n")
    reruns(
        planned_jobs(output),
        must={"patches", "pretrain", "finetune", *REPORT},
        must_not=upstream("patches") | {"degradation_gallery"},
    )
    # Every patch store; Basic CL reads no patches, CoMCL does: only the pretrainings of patch-reading variants.
    tiny = resolved(config)
    assert where(output, "patches", "dataset", "version") == {(d, v) for d in config["datasets"] for v in versions(tiny)}
    every = {(d, v, variant) for d in config["datasets"] for v, variant in pretrainings(tiny)}
    patched = {run for run in every if reads_patches(run[2])}
    assert set() < patched < every  # both kinds pretrain, so that the plan tells them apart
    assert where(output, "pretrain", "dataset", "version", "variant") == patched


@pytest.mark.workflow
def test_a_lesion_box_file_reruns_only_the_lesion_truth_measurement(workdir):
    """The boxes train nothing: pointing a dataset at other boxes reruns their measurement and the tables' notes."""
    shutil.copy(workdir / "out/synthetic/eyeq/lesion_boxes.csv", workdir / "out/synthetic/eyeq/boxes_copy.csv")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["patches"]["k"] = 2
    config["datasets"]["eyeq"]["lesion_boxes"] = "boxes_copy.csv"
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "-n")
    reruns(
        planned_jobs(output), must={"lesion_truth", "tables"}, must_not={*STAGES, *SHOWN, *REPORT} - {"lesion_truth", "tables"}
    )
    assert where(output, "lesion_truth", "dataset", "version") == {("eyeq", version) for version in versions(resolved(config))}
    del config["datasets"]["eyeq"]["lesion_boxes"]
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.workflow
def test_the_lesion_levels_are_measured_against_the_generator_s_lesions(workdir):
    truth = json.loads((workdir / "out/eyeq/original/lesion_truth.json").read_text())
    patches = json.loads((workdir / "out/eyeq/original/patches.json").read_text())
    for split, levels in truth["per_split_level"].items():
        assert set(levels) <= {"L", "L~"}
        for level, cell in levels.items():
            assert cell["lesions"] > 0 and 0 <= cell["true_detections"] <= min(cell["detections"], cell["lesions"])
            if split != "all":
                assert cell["patches"] == patches["per_split_level"][split][level]["patches"]
                assert cell["rim_dropped"] == patches["per_split_level"][split][level]["rim_detections_dropped"]
    table = (workdir / "out/tables/table1.md").read_text()
    assert "lesion patches against the dataset's own lesion boxes" in table


@pytest.mark.workflow
def test_a_pretrain_config_change_reruns_only_pretraining(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["patches"]["k"] = 2
    config["pretrain"]["lr"] = 0.002
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "-n"))
    reruns(jobs, must={"pretrain", "finetune", *REPORT}, must_not=upstream("pretrain") | SHOWN)
    # Every encoder (the key is every variant's) and the fine-tuning of each; a baseline's would read none of them.
    tiny, datasets = resolved(config), len(config["datasets"])
    encoders = datasets * len(pretrainings(tiny))
    assert (jobs["pretrain"], jobs["finetune"]) == (encoders, encoders * len(tiny["finetune"]["seeds"]))


@pytest.mark.workflow
def test_a_finetune_config_change_reruns_only_fine_tuning(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["pretrain"]["lr"] = 0.001
    config["finetune"]["lr"] = 0.002
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "-n"))
    # The linear evaluation and the t-SNE read the encoders, not the fine-tuned models.
    reruns(
        jobs,
        must={"finetune", "finetune_figures", "gradcam", "comparisons", "tables"},
        must_not=upstream("finetune") | SHOWN | {"linear_eval", "linear_table", "tsne"},
    )
    assert jobs["finetune"] == len(config["datasets"]) * finetunings(resolved(config))  # every fine-tuning


@pytest.mark.workflow
def test_a_figure_config_change_reruns_only_that_figure(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    del config["finetune"]["lr"]
    config["figures"]["gradcam"]["images"] = 1
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    reruns(planned_jobs(snakemake(workdir, "-n")), must={"gradcam"}, must_not={*STAGES, *SHOWN, *REPORT} - {"gradcam"})


@pytest.mark.workflow
def test_a_change_of_where_the_data_come_from_reruns_only_the_fetch_rule(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["figures"]["gradcam"]["images"] = 2
    config["datasets"]["chestxray14"]["download"] = {"keep_archives": True}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "-n")
    reruns(planned_jobs(output), must={"fetch_dataset"}, must_not={*STAGES, *SHOWN, *REPORT} - {"fetch_dataset"})
    assert where(output, "fetch_dataset", "dataset") == {("chestxray14",)}  # EyeQ's download did not change


def test_the_workflow_lints_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stderr


def test_the_evidence_configuration_plans_its_whole_comparison(tmp_path):
    """Tables 1-3 on EyeQ at five fine-tuning seeds: the supervised baseline on every version, the contrastive
    methods on the original and the 70 % version, the ablations on the original; nothing to download. Planned in a
    folder of its own, which no earlier run of the configuration has touched."""
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "-n", "--configfile", str(REPO / "config/evidence.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Data to provide" not in result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    assert (jobs["synthesize"], jobs["train_detector"], jobs["pretrain"], jobs["finetune"], jobs["linear_eval"]) == (
        2,
        1,
        10,
        5 * (3 + 10),
        2,
    )
    assert jobs["tables"] == jobs["linear_table"] == jobs["comparisons"] == 1


def test_without_the_real_data_the_paper_configuration_plans_everything_and_lists_what_to_provide():
    result = subprocess.run([*SNAKEMAKE, "-n", "--configfile", "config/paper.yaml"], capture_output=True, text=True, cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    downloads, to_provide = output.split("The fetch rules will download or extract:")[1].split("Data to provide")
    assert (
        "eyeq: EyeQ train labels (data/eyeq/Label_EyeQ_train.csv): downloaded from https://raw.githubusercontent.com" in downloads
    )
    assert "chestxray14: ChestX-ray14 images (data/chestxray14/images): the 12 configured archives" in downloads
    assert "eyeq: EyePACS train images (data/eyeq/train): (1) sign in to Kaggle" in to_provide
    assert "eyeq lesions: IDRiD segmentation tree (data/idrid/A. Segmentation): register" in to_provide
    jobs = planned_jobs(result.stdout)
    # 132 fine-tunings: 2 datasets x 3 seeds x (3 baselines x 3 versions + 13 pretrained encoders), the paper's comparison.
    assert (jobs["fetch_dataset"], jobs["fetch_lesions"], jobs["finetune"]) == (2, 1, 132) and "synthesize" not in jobs


@pytest.mark.workflow
def test_with_the_data_present_the_paper_configuration_plans_every_stage_and_runs_fetching_and_indexing(workdir):
    """The tiny run's synthetic datasets are in the real formats: the paper configuration pointed at a copy of them plans
    its full DAG (3 seeds, 3 baselines, 7 variants, 3 dataset versions, 2 datasets), then fetches (checks), preprocesses
    and indexes them. The label files' MD5s are those of the copies: the published ones would refuse them."""
    data = workdir / "paper_data"
    shutil.copytree(workdir / "out/synthetic", data)
    eyeq_labels = {split: {"md5": md5sum(data / f"eyeq/Label_EyeQ_{split}.csv")} for split in ("train", "test")}
    overlay = {
        "results": "paper_out",
        "index": {"val_share": 0.25},  # the tiny EyeQ set has 4 training patients: the paper's 0.1 of them is none
        "datasets": {
            "eyeq": {"format": "eyeq", "root": str(data / "eyeq"), "download": {"labels": eyeq_labels}},
            "chestxray14": {"format": "chestxray14", "root": str(data / "chestxray14"), "data_entry": "Data_Entry_2017.csv"},
        },
        "detector": {
            "annotations": {"eyeq": {"format": "idrid", "root": str(data / "idrid"), "expected_images": {"train": 2, "test": 2}}}
        },
    }
    (workdir / "paper_data.yaml").write_text(yaml.safe_dump(overlay))
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2"]
    configs = ["--configfile", str(REPO / "config/paper.yaml"), str(workdir / "paper_data.yaml")]
    result = subprocess.run([*command, "-n", *configs], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Data to provide" not in result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    # No lesion box file is configured: nothing to measure the lesion levels against.
    reruns(jobs, must={*STAGES, *SHOWN, *REPORT} - {"synthesize", "lesion_truth"}, must_not={"synthesize"})
    paper = resolved(overlay, REPO / "config/paper.yaml")
    variants = {variant for _, variant in pretrainings(paper)}
    shape = (len(paper["finetune"]["seeds"]), len(paper["finetune"]["baselines"]), len(variants), len(versions(paper)))
    assert (*shape, len(paper["datasets"])) == (3, 3, 7, 3, 2)
    # Per dataset, every version's data stages, every pretraining and fine-tuning, a linear evaluation per pretrained version.
    per_dataset = {
        "train_detector": 1,
        "degrade": len(paper["degrade"]["proportions"]),
        "detect": len(versions(paper)),
        "patches": len(versions(paper)),
        "pretrain": len(pretrainings(paper)),
        "finetune": finetunings(paper),
        "linear_eval": len({version for version, _ in pretrainings(paper)}),
    }
    datasets = len(paper["datasets"])
    assert {rule: jobs[rule] for rule in per_dataset} == {rule: datasets * count for rule, count in per_dataset.items()}

    targets = [
        "paper_out/eyeq/original/index.parquet",
        "paper_out/chestxray14/original/index.parquet",
        "paper_out/eyeq/detector/source.json",
    ]
    result = subprocess.run([*command, *targets, *configs], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    eyeq, _ = read_table(workdir / "paper_out/eyeq/original/index.parquet")
    assert len(eyeq) == 14 and eyeq["path"].str.contains("paper_out/eyeq/preprocessed/images").all()
    assert Image.open(workdir / eyeq["path"].iloc[0]).size == (800, 800)
    fetched = json.loads((workdir / "paper_out/chestxray14/source.json").read_text())
    chest, meta = read_table(workdir / "paper_out/chestxray14/original/index.parquet")
    assert fetched["images"]["labelled"] == fetched["data_entry"]["rows"] == len(chest) + meta["boxed_test_images_removed"]
    assert json.loads((workdir / "paper_out/eyeq/detector/source.json").read_text())["train"]["images"] == 2


def test_a_configuration_of_results_and_datasets_alone_resolves_every_other_key_to_the_schema_default(tmp_path):
    """A configuration file starts from the schema's defaults (the paper's values), not from the demo, and the run
    writes what it resolved to beside its results."""
    user = {"results": "mine", "datasets": {"nih": {"format": "chestxray14", "root": "data/nih"}}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(user))
    command = [
        *SNAKEMAKE,
        "mine/config.yaml",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
        "--configfile",
        str(tmp_path / "mine.yaml"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = yaml.safe_load((tmp_path / "mine/config.yaml").read_text())
    expected = json.loads(json.dumps(user))
    validate(expected, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert resolved == expected
    assert (resolved["pretrain"]["batch_size"], resolved["pretrain"]["queue_size"], resolved["finetune"]["epochs"]) == (
        400,
        4096,
        30,
    )
    assert resolved["synthetic"]["datasets"] == [] and "eyeq" not in resolved["datasets"]


def test_the_paper_configuration_sets_only_what_differs_from_the_schema_defaults():
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert set(paper) == {"results", "datasets", "detector"} and set(paper["detector"]) == {"annotations"}


def test_fundus_preprocessing_can_be_turned_off(tmp_path):
    (tmp_path / "off.yaml").write_text(yaml.safe_dump({"preprocess": {"enabled": False}}))
    result = subprocess.run([*SNAKEMAKE, "-n", *over_the_demo(tmp_path / "off.yaml")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "rule preprocess:" not in result.stdout and "rule index:" in result.stdout


def test_a_bad_config_is_refused_when_the_workflow_loads(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"index": {"check_images": "sometimes"}}))
    result = subprocess.run([*SNAKEMAKE, "-n", *over_the_demo(tmp_path / "bad.yaml")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert "sometimes" in result.stdout + result.stderr


def test_the_schema_fills_in_defaults():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert "labels" not in config["datasets"]["eyeq"]
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert config["datasets"]["eyeq"]["labels"] == {"train": "Label_EyeQ_train.csv", "test": "Label_EyeQ_test.csv"}
    assert config["datasets"]["chestxray14"]["other_findings"] == "negative"
    assert config["synthetic"]["eyeq"]["low_quality_share"] == {"train": 0.334, "test": 0.479}
