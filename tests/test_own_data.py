"""A dataset of one's own (``format: table``, lesion boxes as COCO): read, refused with file, line and what to do
where it is wrong, and run through every stage to Tables 1-3."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import yaml

from comcl.datasets.fetch import fetch_source
from comcl.datasets.table import read_labels
from comcl.errors import DataError
from comcl.index.build import build_index
from comcl.io import read_table
from tests.conftest import REPO
from tests.table_dataset import write_table_dataset
from tests.tiny_workflow import SNAKEMAKE, TINY, planned_jobs


def write_csv(path, text: str):
    path.write_text(text)
    return path


def test_a_grading_table_is_indexed_with_its_patients_quality_and_levels(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    frame, meta = build_index({**setup["dataset"], "labels": "labels.csv"}, "header", 1, val_share=0.25, seed=2)
    assert (meta["format"], meta["modality"], meta["task"], meta["label_columns"], meta["num_classes"]) == (
        "table",
        "fundus",
        "grading",
        ["grade"],
        5,
    )
    assert set(frame["split"]) == {"train", "val", "test"}
    assert frame.groupby("patient_id")["split"].nunique().max() == 1  # both eyes on one side
    assert (frame["quality"] == "low").sum() == 6 and set(frame["level"]) == {"L", "L~", "H"}
    assert frame["path"].str.endswith(".jpg").all() and frame["image_id"].iloc[0] == "p000_left"


def test_a_multilabel_table_without_quality_or_patients_takes_the_quality_score(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels["Effusion"] = (labels["grade"] > 1).astype(int)
    labels["Nodule"] = (labels["grade"] == 4).astype(int)
    labels[["image", "split", "Effusion", "Nodule"]].to_csv(tmp_path / "mine/chest.csv", index=False)
    section = {
        **setup["dataset"],
        "labels": "chest.csv",
        "task": "multilabel",
        "findings": ["Effusion", "Nodule"],
        "modality": "chest",
        "low_quality_share": 0.5,
    }
    frame, meta = build_index(section, "header", 1, val_share=0.25, seed=2)
    assert (meta["task"], meta["label_columns"], meta["num_classes"], meta["modality"]) == (
        "multilabel",
        ["Effusion", "Nodule"],
        2,
        "chest",
    )
    assert frame["quality_score"].notna().all() and (frame["quality"] == "low").mean() == 0.5
    assert frame["patient_id"].equals(frame["image_id"])  # without a patient column, each image its own patient
    assert frame["lesion"].equals(frame["Effusion"] | frame["Nodule"])


def test_a_table_without_quality_and_without_its_images_is_refused_naming_the_folder(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels[["image", "split", "grade"]].to_csv(tmp_path / "mine/no_quality.csv", index=False)
    section = {**setup["dataset"], "labels": "no_quality.csv", "images": "elsewhere"}
    with pytest.raises(DataError, match="images folder .*elsewhere does not exist") as error:
        build_index(section, "none", 1, val_share=0.25, seed=2)
    assert "a quality column (high or low) in no_quality.csv" in str(error.value)


HEADER = "image,split,grade\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("image,grade\na.jpg,1\n", 1, "missing column(s) 'split'"),
        (HEADER + "a.jpg,train,1\nb.jpg,test,7\n", 3, "unknown grade (0-4) '7'"),
        (HEADER + "a.jpg,train,1\nb.jpg,test,mild\n", 3, "unknown grade (0-4) 'mild'"),
        (HEADER + "a.jpg,train,1\nb.jpg,validation,0\n", 3, "split 'validation' is none of train, test"),
        (HEADER + "a.jpg,train,1\nb.jpg,train,0\n", None, "the test split is empty"),
        (HEADER + "x/a.jpg,train,1\ny/a.jpg,test,0\n", 3, "image 'a' is listed more than once"),
        (HEADER + "a.jpg,train,1\n/data/victim/b.jpg,test,0\n", 3, "image '/data/victim/b.jpg' is not a path inside"),
        (HEADER + "a.jpg,train,1\nb.jpg,test,3.0\n", 3, "unknown grade (0-4) '3.0'"),
        ("image,split,grade,quality\na.jpg,train,1,Good\nb.jpg,test,0,bad\n", 3, "quality 'bad' is none of high, low, good"),
        (HEADER + "../../victim/a.jpg,train,1\nb.jpg,test,0\n", 2, "image '../../victim/a.jpg' is not a path inside"),
        (HEADER + "a.jpg,train,1\nC:\\data\\b.jpg,test,0\n", 3, "is not a path inside the dataset's root"),
    ],
)
def test_a_bad_grading_table_is_refused_naming_its_line(tmp_path, text, line, message):
    with pytest.raises(DataError, match=r"labels\.csv") as error:
        read_labels(write_csv(tmp_path / "labels.csv", text), "grading", None, num_classes=5)
    assert message in str(error.value) and error.value.line == line
    assert "What to do" in str(error.value)


def test_an_image_linked_from_outside_the_root_is_refused_unless_the_dataset_allows_it(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    inside = tmp_path / "mine" / labels["image"].iloc[2]
    outside = tmp_path / "elsewhere" / inside.name
    outside.parent.mkdir()
    inside.rename(outside)
    inside.symlink_to(outside)
    source = {**setup["dataset"], "labels": "labels.csv"}
    with pytest.raises(DataError, match=r"labels\.csv, line 4: 1 of 18 labelled images are links to files outside") as error:
        fetch_source("mine", source, tmp_path / "fetch.json")
    assert "links_outside_root: true" in str(error.value)
    assert fetch_source("mine", {**source, "links_outside_root": True}, tmp_path / "fetch.json")["labels"]["rows"] == 18


def test_a_quality_column_takes_eyeqs_words_and_numbers(tmp_path):
    text = "image,split,grade,quality\na.jpg,train,1,Good\nb.jpg,train,0,usable\nc.jpg,test,0,REJECT\nd.jpg,test,2,0\ne.jpg,test,2,2\nf.jpg,test,0,low\n"
    frame, _ = read_labels(write_csv(tmp_path / "labels.csv", text), "grading", None, num_classes=5)
    assert frame["quality"].tolist() == ["high", "low", "low", "high", "low", "low"]


def test_a_finding_column_with_other_values_than_0_and_1_is_refused(tmp_path):
    text = "image,split,Effusion\na.jpg,train,1\nb.jpg,test,2\n"
    with pytest.raises(DataError, match=r"line 3: unknown value of finding 'Effusion' '2'"):
        read_labels(write_csv(tmp_path / "labels.csv", text), "multilabel", ["Effusion"], None)


def test_an_image_the_table_names_but_the_folder_lacks_is_refused_naming_its_line(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    (tmp_path / "mine" / labels["image"].iloc[3]).unlink()
    with pytest.raises(DataError, match=r"labels\.csv, line 5: 1 of 18 labelled images cannot be used"):
        build_index({**setup["dataset"], "labels": "labels.csv"}, "exists", 1, val_share=0.25, seed=2)


@pytest.mark.workflow
def test_a_dataset_of_ones_own_runs_through_every_stage_to_the_tables(tmp_path):
    """A table of fundus photographs and a COCO export of its lesion boxes, in a configuration that states only what
    differs from the defaults (and the tiny sizes): preprocessing, index, degradation, detector, patches, pretraining,
    fine-tuning, Tables 1-3 and figures, no evaluation image among the detector's."""
    setup = write_table_dataset(tmp_path / "mine")
    config = {
        **TINY,
        "results": "own",
        "synthetic": {"datasets": []},
        "datasets": {"mine": setup["dataset"]},
        "degrade": {"proportions": [1.0]},
        "detector": {**TINY["detector"], "annotations": {"mine": setup["lesions"]}},
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "2",
        "--configfile",
        str(tmp_path / "own.yaml"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    index, meta = read_table(tmp_path / "own/mine/original/index.parquet")
    assert meta["format"] == "table" and index["path"].str.contains("own/mine/preprocessed/images/photos/").all()
    boxes = json.loads((tmp_path / "own/mine/detector/annotations/summary.json").read_text())
    assert boxes["classes"] == ["MA", "HE", "EX", "SE"] and sum(boxes["excluded_evaluation_images"].values()) == 10
    detector_images = {
        image["file_name"]
        for split in ("train", "test")
        for image in json.loads((tmp_path / f"own/mine/detector/annotations/{split}.json").read_text())["images"]
    }
    assert not detector_images & set(index.loc[index["split"] != "train", "path"])
    table1 = pd.read_csv(tmp_path / "own/tables/table1.csv")
    assert set(table1.loc[table1["dataset"] == "mine", "method"]) >= {"basic_cl", "comcl"}
    assert (tmp_path / "own/figures/gradcam_mine_original.png").is_file()
    assert planned_jobs(subprocess.run([*command, "-n"], capture_output=True, text=True, cwd=tmp_path).stdout) == {}
