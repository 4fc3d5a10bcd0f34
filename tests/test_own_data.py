"""A dataset of one's own (``format: table``, lesion boxes as COCO): read, refused with file, line and what to do
where it is wrong, and run through every stage to Tables 1-3."""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest
import yaml

from comcl.datasets.fetch import fetch_source
from comcl.datasets.table_format import read_labels
from comcl.errors import DataError
from comcl.index.build import build_index, run_index
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


def test_a_chest_table_without_quality_and_without_its_images_is_refused_naming_the_folder(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels[["image", "split", "grade"]].to_csv(tmp_path / "mine/no_quality.csv", index=False)
    section = {**setup["dataset"], "modality": "chest", "labels": "no_quality.csv", "images": "elsewhere"}
    with pytest.raises(DataError, match="images folder .*elsewhere does not exist") as error:
        build_index(section, "none", 1, val_share=0.25, seed=2)
    assert "a quality column (high or low) in no_quality.csv" in str(error.value)


def test_a_fundus_table_without_quality_is_refused_asking_for_eyeqs_words(tmp_path):
    """The no-reference score is a chest radiograph score: it does not stand in for a fundus table's quality labels."""
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels[["image", "split", "grade"]].to_csv(tmp_path / "mine/no_quality.csv", index=False)
    with pytest.raises(DataError, match=r"no_quality\.csv, line 1: dataset mine: the label file has no quality column") as error:
        build_index({**setup["dataset"], "labels": "no_quality.csv"}, "header", 1, val_share=0.25, seed=2)
    message = str(error.value)
    assert "chest radiograph score" in message and "Good, Usable or Reject (or 0, 1, 2" in message
    assert "add a column quality to no_quality.csv" in message


def test_the_summary_names_what_scored_each_datasets_quality(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels["Effusion"] = (labels["grade"] > 1).astype(int)
    labels[["image", "split", "Effusion"]].to_csv(tmp_path / "mine/chest.csv", index=False)
    chest = {**setup["dataset"], "labels": "chest.csv", "task": "multilabel", "findings": ["Effusion"], "modality": "chest"}
    for name, section in (("fundus", {**setup["dataset"], "labels": "labels.csv"}), ("chest", chest)):
        run_index(name, section, "header", 1, 0.25, 2, tmp_path / name / "index.parquet", tmp_path / name / "summary.json")
    sources = {name: json.loads((tmp_path / name / "summary.json").read_text())["quality_source"] for name in ("fundus", "chest")}
    assert sources == {"fundus": "labels", "chest": "chest radiograph score (comcl.index.quality)"}
    assert read_table(tmp_path / "chest/index.parquet")[1]["quality_source"] == sources["chest"]


def test_a_validation_split_of_one_image_is_refused_with_the_split_counts_and_the_share_that_would_do(tmp_path):
    """13 training images, each its own patient: 0.05 of them rounds to one image, of one grade."""
    setup = write_table_dataset(tmp_path / "mine", n_train=13)
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels.drop(columns="patient").to_csv(tmp_path / "mine/labels.csv", index=False)
    with pytest.raises(DataError, match=r"labels\.csv: dataset mine: the validation split cannot select a model") as error:
        build_index({**setup["dataset"], "labels": "labels.csv"}, "header", 1, val_share=0.05, seed=2)
    message = str(error.value)
    assert "it holds 1 image of grade" in message
    assert "(splits: train 12 images of 12 patients, val 1 image of 1 patient, test 6 images of 6 patients)" in message
    suggested = float(re.search(r"raise index.val_share from 0.05 to at least ([0-9.]+) \((\d+) of the 13", message)[1])
    frame, _ = build_index({**setup["dataset"], "labels": "labels.csv"}, "header", 1, val_share=suggested, seed=2)
    assert frame.loc[frame["split"] == "val", "grade"].nunique() >= 2  # the share the hint names does


def test_a_multilabel_validation_split_whose_findings_do_not_vary_is_refused(tmp_path):
    setup = write_table_dataset(tmp_path / "mine")
    labels = pd.read_csv(tmp_path / "mine/labels.csv")
    labels["Effusion"] = (labels["split"] == "test").astype(int)  # absent on every train and validation image
    labels[["image", "split", "patient", "Effusion"]].to_csv(tmp_path / "mine/chest.csv", index=False)
    section = {**setup["dataset"], "labels": "chest.csv", "task": "multilabel", "findings": ["Effusion"], "modality": "chest"}
    with pytest.raises(DataError, match="it holds 4 images, each finding on all or none") as error:
        build_index(section, "header", 1, val_share=0.25, seed=2)
    assert "add training images" in str(error.value) and "a finding present on some of its images" in str(error.value)


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
    source = {**setup["dataset"], "links_outside_root": False}  # the schema's default, which the fetch rule gets
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
