"""The lesion detector: boxes from masks and box lists (never on an evaluation image), COCO files, MMDetection
training and inference."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from mmengine.runner.loops import IterBasedTrainLoop

from comcl.datasets import chestxray14 as nih
from comcl.datasets import idrid
from comcl.detector.annotations import lesion_annotations, mask_boxes, write_lesion_annotations
from comcl.detector.detect import detect, frame_padding, load_detector, training_aspect
from comcl.detector.train import own_checkpoint, train_detector
from comcl.errors import DataError
from comcl.io import save_image, write_table
from tests.conftest import REPO

SMALL_MODEL = REPO / "config/detector/faster_rcnn_r18_fpn_small.py"
PAPER_MODEL = REPO / "config/detector/faster_rcnn_r50_fpn.py"
TINY_TRAINING = dict(
    scale=[144, 96],
    iterations=4,
    batch_size=2,
    lr=0.01,
    warmup_iterations=2,
    checkpoint_interval=2,
    workers=0,
    pretrained=None,
    seed=0,
    device="cpu",
)


def test_mask_boxes_one_box_per_eight_connected_component():
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:4] = True  # 2x3 block
    mask[3, 4] = True  # touches the block diagonally: same component
    mask[1:3, 6] = True  # separated by a column of background: own component
    mask[8, 10] = True  # a one-pixel lesion
    assert mask_boxes(mask, min_area=1) == [(1, 1, 4, 3, 7), (6, 1, 1, 2, 2), (10, 8, 1, 1, 1)]
    assert mask_boxes(mask, min_area=2) == [(1, 1, 4, 3, 7), (6, 1, 1, 2, 2)]
    assert mask_boxes(np.zeros((5, 5), bool), min_area=1) == []


def _idrid_tree(root: Path, masks: dict[tuple[str, int, str], np.ndarray]) -> None:
    for split, number in (("train", 1), ("test", 2)):
        save_image(idrid.image_path(root, split, number), np.full((20, 30, 3), 90, np.uint8))
    for (split, number, kind), mask in masks.items():
        red = np.zeros((*mask.shape, 3), np.uint8)
        red[mask] = idrid.MASK_COLOUR
        save_image(idrid.mask_path(root, split, kind, number), red)


def test_idrid_masks_become_coco_boxes_and_absent_masks_mean_no_boxes(tmp_path):
    ma, he = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
    ma[2, 3] = ma[10:12, 20:22] = True
    he[5:9, 5:15] = True
    _idrid_tree(tmp_path, {("train", 1, "MA"): ma, ("train", 1, "HE"): he, ("test", 2, "HE"): he})
    source = {"format": "idrid", "root": str(tmp_path)}
    splits, summary = lesion_annotations(source, min_area=2, test_share=0.2, seed=0, held_out={})
    train = splits["train"]
    assert [c["name"] for c in train["categories"]] == ["MA", "HE", "EX", "SE"]
    assert train["images"] == [{"id": 1, "file_name": str(idrid.image_path(tmp_path, "train", 1)), "width": 30, "height": 20}]
    boxes = sorted((a["category_id"], a["bbox"], a["area"]) for a in train["annotations"])
    assert boxes == [(1, [20.0, 10.0, 2.0, 2.0], 4.0), (2, [5.0, 5.0, 10.0, 4.0], 40.0)]  # the one-pixel MA is below min_area
    assert summary["test"] == {"images": 1, "boxes": {"MA": 0, "HE": 1, "EX": 0, "SE": 0}}


def test_idrid_mask_of_the_wrong_size_is_refused(tmp_path):
    he = np.ones((10, 10), bool)
    _idrid_tree(tmp_path, {("train", 1, "HE"): he, ("test", 2, "HE"): np.ones((20, 30), bool)})
    with pytest.raises(DataError, match=r"IDRiD_01_HE.tif.*mask is 10x10 but its image is 30x20"):
        lesion_annotations({"format": "idrid", "root": str(tmp_path)}, min_area=1, test_share=0.2, seed=0, held_out={})


def test_a_split_without_boxes_is_refused(tmp_path):
    _idrid_tree(tmp_path, {("train", 1, "HE"): np.ones((20, 30), bool)})
    with pytest.raises(DataError, match="no lesion boxes in the test split"):
        lesion_annotations({"format": "idrid", "root": str(tmp_path)}, min_area=1, test_share=0.2, seed=0, held_out={})


def test_a_missing_idrid_folder_names_what_to_extract(tmp_path):
    with pytest.raises(DataError, match="A. Segmentation"):
        lesion_annotations({"format": "idrid", "root": str(tmp_path)}, min_area=1, test_share=0.2, seed=0, held_out={})


def _nih_source(root: Path) -> dict:
    return {
        "format": "chestxray14",
        "root": str(root),
        "bbox_list": nih.BBOX_FILE,
        "data_entry": nih.DATA_ENTRY_FILE,
        "images": "images",
    }


def test_nih_boxes_split_patient_wise_with_every_box_kept(synthetic_chest):
    root, _ = synthetic_chest
    listed = nih.read_bbox_list(root / nih.BBOX_FILE)
    splits, _summary = lesion_annotations(_nih_source(root), min_area=1, test_share=0.3, seed=3, held_out={})
    assert [c["name"] for c in splits["train"]["categories"]] == list(nih.TASK_FINDINGS)
    assert sum(len(s["annotations"]) for s in splits.values()) == len(listed)
    entry = nih.read_data_entry(root / nih.DATA_ENTRY_FILE).set_index("Image Index")
    patients = {split: {entry.loc[Path(i["file_name"]).name, "Patient ID"] for i in s["images"]} for split, s in splits.items()}
    assert patients["train"] and patients["test"] and not patients["train"] & patients["test"]
    first = listed.iloc[0]
    (split,) = [s for s in splits.values() if any(i["file_name"].endswith(first["image"]) for i in s["images"])]
    (image,) = [i["id"] for i in split["images"] if i["file_name"].endswith(first["image"])]
    bboxes = [a["bbox"] for a in split["annotations"] if a["image_id"] == image]
    assert [first["x"], first["y"], first["w"], first["h"]] in bboxes


def _held_out_names(listed: pd.DataFrame, entry: pd.DataFrame) -> dict[str, set[str]]:
    """Image ids of a made-up diagnosis index's evaluation splits: the box images of the first patient in val,
    those of the second and third in test."""
    patients = entry.loc[listed["image"].drop_duplicates(), "Patient ID"]
    order = sorted(patients.unique())
    names = {
        split: set(patients[patients.isin(chosen)].index.str.removesuffix(".png"))
        for split, chosen in (("val", order[:1]), ("test", order[1:3]))
    }
    assert all(names.values())
    return names


def test_no_image_of_the_evaluation_splits_reaches_the_detector(synthetic_chest, tmp_path):
    root, _ = synthetic_chest
    listed = nih.read_bbox_list(root / nih.BBOX_FILE)
    entry = nih.read_data_entry(root / nih.DATA_ENTRY_FILE).set_index("Image Index")
    held_out = _held_out_names(listed, entry)
    rows = [{"image_id": name, "split": split} for split, names in held_out.items() for name in names]
    write_table(tmp_path / "index.parquet", pd.DataFrame([*rows, {"image_id": "elsewhere", "split": "train"}]), {})
    files = {name: tmp_path / f"{name}.json" for name in ("train", "test", "summary")}
    summary = write_lesion_annotations(_nih_source(root), 1, 0.3, 3, tmp_path / "index.parquet", *files.values())
    cocos = [json.loads(files[name].read_text()) for name in ("train", "test")]
    used = {Path(image["file_name"]).stem for coco in cocos for image in coco["images"]}
    assert used and not used & (held_out["val"] | held_out["test"])
    assert used | held_out["val"] | held_out["test"] == set(listed["image"].str.removesuffix(".png"))
    assert summary["excluded_evaluation_images"] == {split: len(names) for split, names in held_out.items()}
    assert json.loads(files["summary"].read_text()) == json.loads(json.dumps(summary))


def test_the_guard_holds_for_idrid_trees_too(tmp_path):
    he = np.zeros((20, 30), bool)
    he[5:9, 5:15] = True
    _idrid_tree(tmp_path, {("train", 1, "HE"): he, ("test", 2, "HE"): he})
    source = {"format": "idrid", "root": str(tmp_path)}
    with pytest.raises(DataError, match=r"no lesion boxes in the train split \(0 images; 1 images of the dataset's evaluation"):
        lesion_annotations(source, min_area=1, test_share=0.2, seed=0, held_out={"test": {"IDRiD_01"}})


@pytest.fixture(scope="module")
def tiny_detector(synthetic_idrid, tmp_path_factory):
    """A detector trained for a few iterations on the tiny synthetic IDRiD set."""
    root, _ = synthetic_idrid
    out = tmp_path_factory.mktemp("detector")
    source = {"format": "idrid", "root": str(root)}
    write_table(out / "index.parquet", pd.DataFrame({"image_id": ["10009_left"], "split": ["test"]}), {})  # an EyeQ image
    files = [out / f"{name}.json" for name in ("train", "test", "summary")]
    write_lesion_annotations(source, 1, 0.2, 0, out / "index.parquet", *files)
    outputs = {name: out / name for name in ("model.pth", "metrics.json", "log.csv", "curves.png")}
    annotations = {"train": out / "train.json", "test": out / "test.json"}
    train_detector(SMALL_MODEL, annotations, TINY_TRAINING, out / "work", *outputs.values(), threads=2)
    return out, annotations, outputs


def test_a_tiny_detector_trains_and_reports_coco_map(tiny_detector):
    _, _, outputs = tiny_detector
    metrics = json.loads(outputs["metrics.json"].read_text())
    assert metrics["backbone"] == "scratch" and metrics["iterations"] == 4
    assert 0 <= metrics["mAP"] <= 1 and set(metrics["AP_per_class"]) == {"MA", "HE", "EX", "SE"}
    curves = pd.read_csv(outputs["log.csv"])
    assert {"iter", "loss", "loss_rpn_cls", "loss_cls"} <= set(curves.columns) and curves["iter"].max() == 4
    assert outputs["curves.png"].stat().st_size > 5_000


def test_the_exported_checkpoint_loads_with_weights_only_and_detects(tiny_detector, synthetic_idrid, tmp_path):
    _out, annotations, outputs = tiny_detector
    content = torch.load(outputs["model.pth"], weights_only=True)
    assert content["meta"]["classes"] == ["MA", "HE", "EX", "SE"]
    model, meta = load_detector(outputs["model.pth"], SMALL_MODEL, ["MA", "HE", "EX", "SE"], torch.device("cpu"))
    root, truth = synthetic_idrid
    images = pd.DataFrame(
        {"image_id": truth["image"], "path": [str(root / f) for f in truth["file"]], "split": truth["split"], "level": "L"}
    )
    found = detect(model, meta, images, batch_size=2, workers=0, aspect=training_aspect(annotations["train"]))
    assert list(found.columns) == ["image_id", "split", "level", "x1", "y1", "x2", "y2", "score", "label"]
    assert found["label"].isin(["MA", "HE", "EX", "SE"]).all() and found["score"].between(0, 1).all()
    assert ((found["x2"] <= 144 + 1e-3) & (found["y2"] <= 96 + 1e-3)).all()  # boxes in original pixels

    # A square cut of each image is padded to the training images' 3:2 shape, and its boxes come back in the square.
    squares = images.assign(path=[str(tmp_path / f"{name}.png") for name in images["image_id"]])
    for source, target in zip(images["path"], squares["path"], strict=True):
        cv2.imwrite(target, cv2.imread(source)[:, 24:120])
    found = detect(model, meta, squares, batch_size=2, workers=0, aspect=1.5)
    assert ((found[["x1", "y1"]] >= 0).all(axis=None)) and ((found["x2"] <= 96 + 1e-3) & (found["y2"] <= 96 + 1e-3)).all()


def test_an_image_is_padded_to_the_shape_of_the_training_images(tmp_path):
    assert frame_padding(256, 256, 1.5) == (64, 0, 64, 0)
    assert frame_padding(384, 256, 1.5) == (0, 0, 0, 0)
    assert frame_padding(100, 40, 1.0) == (0, 30, 0, 30)
    assert frame_padding(255, 256, 1.5) == (64, 0, 65, 0)
    coco = tmp_path / "train.json"
    coco.write_text(
        json.dumps({"images": [{"width": 4288, "height": 2848}, {"width": 300, "height": 200}, {"width": 90, "height": 60}]})
    )
    assert training_aspect(coco) == pytest.approx(1.5)


def test_a_killed_training_resumes_from_its_checkpoint_and_a_finished_one_keeps_none(
    tiny_detector, tmp_path, caplog, monkeypatch
):
    out, annotations, _ = tiny_detector
    assert not list((out / "work").glob("*.pth")) and not (out / "work" / "last_checkpoint").exists()
    outputs = [tmp_path / name for name in ("model.pth", "metrics.json", "log.csv", "curves.png")]

    class Killed(Exception):
        pass

    original = IterBasedTrainLoop.run_iter

    def die_after_two_iterations(self, data_batch):
        if self._iter == 2:
            raise Killed
        return original(self, data_batch)

    monkeypatch.setattr(IterBasedTrainLoop, "run_iter", die_after_two_iterations)
    with pytest.raises(Killed):
        train_detector(SMALL_MODEL, annotations, TINY_TRAINING, tmp_path / "work", *outputs, threads=2)
    monkeypatch.undo()
    assert (tmp_path / "work" / "iter_2.pth").is_file() and not outputs[0].exists()
    with pytest.raises(DataError, match="not a detector checkpoint exported by this workflow"):
        load_detector(tmp_path / "work" / "iter_2.pth", SMALL_MODEL, ["MA", "HE", "EX", "SE"], torch.device("cpu"))
    with caplog.at_level(logging.INFO, logger="comcl"):
        train_detector(SMALL_MODEL, annotations, TINY_TRAINING, tmp_path / "work", *outputs, threads=2)
    assert "resuming from" in caplog.text and "iter_2.pth" in caplog.text
    assert pd.read_csv(outputs[2])["iter"].max() == 4 and not list((tmp_path / "work").glob("*.pth"))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comcl"):
        train_detector(SMALL_MODEL, annotations, dict(TINY_TRAINING, lr=0.02), tmp_path / "work", *outputs, threads=2)
    assert "belong to another configuration" in caplog.text


def test_a_checkpoint_for_other_classes_or_another_model_is_refused(tiny_detector):
    _, _, outputs = tiny_detector
    with pytest.raises(DataError, match="trained for classes"):
        load_detector(outputs["model.pth"], SMALL_MODEL, list(nih.TASK_FINDINGS), torch.device("cpu"))
    with pytest.raises(DataError, match=r"another model configuration.*differs in: backbone"):
        load_detector(outputs["model.pth"], PAPER_MODEL, ["MA", "HE", "EX", "SE"], torch.device("cpu"))


def test_a_corrupt_image_is_named(tiny_detector, tmp_path):
    _, _, outputs = tiny_detector
    model, meta = load_detector(outputs["model.pth"], SMALL_MODEL, ["MA", "HE", "EX", "SE"], torch.device("cpu"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    images = pd.DataFrame({"image_id": ["x1"], "path": [str(broken)], "split": ["train"], "level": ["L"]})
    with pytest.raises(DataError, match=r"broken.jpg: cannot decode image 'x1'"):
        detect(model, meta, images, batch_size=1, workers=0, aspect=1.0)


def test_the_detector_resumes_only_from_a_checkpoint_file_in_its_own_work_folder(tmp_path):
    """MMEngine's ``last_checkpoint`` pointer is followed only into the work folder: resuming unpickles the file."""
    work, outside = tmp_path / "work", tmp_path / "planted.pth"
    work.mkdir()
    outside.write_bytes(b"anything")
    (work / "iter_2.pth").write_bytes(b"checkpoint")
    (work / "link.pth").symlink_to(outside)
    for pointer in (str(outside), "../planted.pth", str(work / "link.pth"), str(work / "missing.pth")):
        (work / "last_checkpoint").write_text(pointer)
        assert own_checkpoint(work) is None, pointer
    (work / "last_checkpoint").write_text(str(work / "iter_2.pth"))
    assert own_checkpoint(work) == (work / "iter_2.pth").resolve()


def _coco_export(root: Path) -> dict:
    """A labelling tool's COCO export under ``root``: four 30x20 images; train.json (a, b, c; b without boxes) with the
    relative test.json's categories under other ids; the source that names them (test.json by its absolute path)."""
    for name in "abcd":
        save_image(root / "images" / f"{name}.png", np.full((20, 30, 3), 90, np.uint8))
    train = {
        "images": [{"id": i, "file_name": f"images/{name}.png", "width": 30, "height": 20} for i, name in enumerate("abc", 1)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 4, 5], "area": 12.5, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10.2, 0, 20.1, 20.3]},  # to the edges, rounded past them
            {"id": 3, "image_id": 3, "category_id": 2, "bbox": [0, 0, 5, 5]},
        ],
        "categories": [{"id": 2, "name": "HE"}, {"id": 1, "name": "MA", "supercategory": ""}],
    }
    test = {
        "images": [{"id": 7, "file_name": str(root / "images" / "d.png"), "width": 30, "height": 20}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": 1, "name": "HE"}, {"id": 2, "name": "MA"}],
    }
    (root / "train.json").write_text(json.dumps(train))
    (root / "test.json").write_text(json.dumps(test))
    return {"format": "coco", "root": str(root), "train": "train.json", "test": str(root / "test.json")}


def test_a_coco_export_keeps_its_split_and_classes_and_loses_its_evaluation_images(tmp_path):
    source = _coco_export(tmp_path)
    splits, summary = lesion_annotations(source, min_area=100, test_share=0.5, seed=0, held_out={"val": {"c"}, "test": set()})
    train, test = splits["train"], splits["test"]
    assert [c["name"] for c in train["categories"]] == [c["name"] for c in test["categories"]] == ["MA", "HE"]  # train ids' order
    assert [(i["file_name"], i["width"], i["height"]) for i in train["images"]] == [
        (str(tmp_path / "images" / name), 30, 20)
        for name in ("a.png", "b.png")  # b: a negative; c: held out
    ]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in train["annotations"]] == [
        (1, [2.0, 3.0, 4.0, 5.0], 12.5),
        (2, [10.2, 0.0, 20.1, 20.3], pytest.approx(20.1 * 20.3)),
    ]
    assert [i["file_name"] for i in test["images"]] == [str(tmp_path / "images" / "d.png")]
    assert [(a["category_id"], a["bbox"]) for a in test["annotations"]] == [(2, [1.0, 1.0, 2.0, 2.0])]  # HE, by name
    assert summary["classes"] == ["MA", "HE"] and summary["excluded_evaluation_images"] == {"val": 1, "test": 0}
    assert summary["train"] == {"images": 2, "boxes": {"MA": 1, "HE": 1}}
    assert summary["test"] == {"images": 1, "boxes": {"MA": 0, "HE": 1}}


def _edit(root: Path, split: str, change) -> None:
    content = json.loads((root / f"{split}.json").read_text())
    change(content)
    (root / f"{split}.json").write_text(json.dumps(content))


def _box(bbox: list[float]):
    return lambda root: _edit(root, "train", lambda content: content["annotations"][0].update(bbox=bbox))


BAD_COCO = {
    "missing file": (lambda root: (root / "train.json").unlink(), "train", r"COCO annotation file not found"),
    "not JSON": (lambda root: (root / "train.json").write_text('{"images": [\n'), "train", r"json, line 2: not a JSON file"),
    "no categories": (lambda root: _edit(root, "train", lambda c: c.pop("categories")), "train", r"not a COCO detection file"),
    "unknown image": (
        lambda root: _edit(root, "train", lambda c: c["annotations"][2].update(image_id=99)),
        "train",
        r"annotation 3: image_id 99 names no image",
    ),
    "unknown category": (
        lambda root: _edit(root, "test", lambda c: c["annotations"][0].update(category_id=5)),
        "test",
        r"annotation 1 on /.*d.png: category_id 5 names no category",
    ),
    "unnamed category": (
        lambda root: _edit(root, "train", lambda c: c["categories"][0].pop("name")),
        "train",
        r"category 2 has no name",
    ),
    "duplicate name": (
        lambda root: _edit(root, "train", lambda c: c["categories"][0].update(name="MA")),
        "train",
        r"categories 1 and 2 are both named 'MA'",
    ),
    "image id twice": (
        lambda root: _edit(root, "train", lambda c: c["images"][1].update(id=1)),
        "train",
        r"image id 1 is given to images/a.png, images/b.png",
    ),
    "box without bbox": (
        lambda root: _edit(root, "train", lambda c: c["annotations"][1].pop("bbox")),
        "train",
        r"entry 2 of annotations \{'id': 2\} lacks bbox",
    ),
    "empty box": (_box([2, 3, 0, 5]), "train", r"annotation 1 on images/a.png: box \[2, 3, 0, 5\] has no area"),
    "NaN x": (_box([float("nan"), 3, 4, 5]), "train", r"annotation 1 on images/a.png: bbox \[nan, 3, 4, 5\].* NaN or infinite"),
    "NaN width": (_box([2, 3, float("nan"), 5]), "train", r"annotation 1 .* NaN or infinite"),
    "infinite height": (_box([2, 3, 4, float("inf")]), "train", r"annotation 1 .* NaN or infinite"),
    "NaN area": (
        lambda root: _edit(root, "train", lambda c: c["annotations"][0].update(area=float("nan"))),
        "train",
        r"annotation 1 .* \(area nan\) has a NaN",
    ),
    "left of the image": (_box([-0.6, 3, 4, 5]), "train", r"annotation 1 on images/a.png: box .* reaches outside the 30x20"),
    "above the image": (_box([2, -1, 4, 5]), "train", r"annotation 1 .* reaches outside the 30x20 image"),
    "right of the image": (_box([27, 3, 3.6, 5]), "train", r"annotation 1 .* reaches outside the 30x20 image"),
    "below the image": (_box([2, 16, 4, 5]), "train", r"annotation 1 .* reaches outside the 30x20 image"),
    "missing image": (lambda root: (root / "images" / "b.png").unlink(), "train", r"images/b.png: missing"),
    "unreadable image": (lambda root: (root / "images" / "b.png").write_bytes(b"not a png"), "train", r"images/b.png: "),
    "wrong size": (
        lambda root: _edit(root, "train", lambda c: c["images"][1].update(width=31)),
        "train",
        r"image images/b.png is 30x20 but the COCO file says 31x20",
    ),
    "other classes": (
        lambda root: _edit(root, "test", lambda c: c["categories"][1].update(name="EX")),
        "test",
        r"the test file's categories \['EX', 'HE'\] are not the train file's \['HE', 'MA'\]",
    ),
    "image in both splits": (
        lambda root: _edit(root, "test", lambda c: c["images"][0].update(file_name="images/a.png")),
        "test",
        r"images/a.png is listed 2 times \(train and test\)",
    ),
    "no test boxes": (lambda root: _edit(root, "test", lambda c: c.update(annotations=[])), None, r"no lesion boxes in the test"),
}


@pytest.mark.parametrize("case", BAD_COCO.values(), ids=BAD_COCO.keys())
def test_a_bad_coco_export_is_refused_naming_its_file_and_what_is_wrong(tmp_path, case):
    break_it, split, message = case
    source = _coco_export(tmp_path)
    break_it(tmp_path)
    with pytest.raises(DataError, match=message) as refused:
        lesion_annotations(source, min_area=1, test_share=0.5, seed=0, held_out={})
    assert refused.value.path == (tmp_path / f"{split}.json" if split else tmp_path) and refused.value.hint
