"""EyeQ-style fundus preprocessing: the circle is found where there is one, a fallback is taken (and
reported) where there is not, outputs are square, and a rerun keeps what is already done."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from comcl.datasets.eyeq import write_labels
from comcl.datasets.preprocess import find_fov, preprocess_folder, preprocess_image, run_preprocess
from comcl.errors import DataError
from comcl.synth.fundus import FundusRendering, render_fundus

SIZE = 96


@pytest.fixture(scope="module")
def fundus() -> FundusRendering:
    return render_fundus(240, 280, {"MA": 3, "HE": 3, "EX": 2, "SE": 1}, "right", np.random.default_rng(3))


def true_circle(rendering: FundusRendering) -> tuple[float, float, float]:
    """Centre and radius of the rendered field of view, from the moments of its mask."""
    ys, xs = np.nonzero(rendering.fov_mask)
    return float(xs.mean()), float(ys.mean()), float(np.sqrt(rendering.fov_mask.sum() / np.pi))


def oval(rendering: FundusRendering) -> np.ndarray:
    """A field of view squashed to two thirds of its width: not a circle, but a clear bright region."""
    h, w = rendering.image.shape[:2]
    return cv2.resize(rendering.image, (2 * w // 3, h), interpolation=cv2.INTER_AREA)


def hidden(rendering: FundusRendering) -> np.ndarray:
    """The disc's edge blurred into a bright background: no rim and no dark background to find."""
    image = rendering.image.copy()
    image[~rendering.fov_mask] = 200
    return cv2.GaussianBlur(image, (0, 0), 20)


def test_a_rendered_fundus_gets_the_circle(fundus):
    x, y, radius = true_circle(fundus)
    fov = find_fov(fundus.image)
    assert fov.method == "circle" and fov.reason == ""
    assert abs(fov.x - x) < 2 and abs(fov.y - y) < 2
    assert fov.radius == pytest.approx(radius, rel=0.03)


def test_a_disc_cut_at_top_and_bottom_comes_out_square_centred_and_padded(fundus):
    x, y, radius = true_circle(fundus)
    top, bottom = 35, 215  # cuts more off the top than the bottom
    out, fov = preprocess_image(fundus.image[top:bottom], SIZE)
    assert fov.method == "circle"
    assert abs(fov.x - x) < 2 and abs(fov.y - (y - top)) < 2 and fov.radius == pytest.approx(radius, rel=0.03)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    scale = SIZE / (2 * radius)
    pad_top, pad_bottom = (radius - (y - top)) * scale, (radius - (bottom - y)) * scale
    bright = np.flatnonzero(out[:, SIZE // 2].max(axis=1) > 30)
    # The disc stays centred: the black bands are as wide as the cut-off parts of the disc.
    assert bright[0] == pytest.approx(pad_top, abs=2) and SIZE - 1 - bright[-1] == pytest.approx(pad_bottom, abs=2)
    assert out[: int(pad_top) - 1].max() == 0 and out[SIZE - int(pad_bottom) + 1 :].max() == 0
    row = np.flatnonzero(out[SIZE // 2].max(axis=1) > 30)
    assert row[0] <= 2 and row[-1] >= SIZE - 3


def test_an_oval_field_of_view_falls_back_to_the_threshold_box(fundus):
    image = oval(fundus)
    fov = find_fov(image)
    assert fov.method == "threshold" and "not a circle" in fov.reason
    ys = np.flatnonzero(fundus.fov_mask.any(axis=1))
    assert fov.radius == pytest.approx((ys.max() - ys.min() + 1) / 2, abs=2)
    assert preprocess_image(image, SIZE)[0].shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize(
    "image",
    [np.zeros((150, 210, 3), np.uint8), np.tile(np.linspace(40, 90, 210, dtype=np.uint8)[None, :, None], (150, 1, 3))],
    ids=["black", "flat gradient"],
)
def test_an_image_without_a_disc_takes_the_centre_square(image):
    fov = find_fov(image)
    assert fov.method == "centre" and "no bright disc" in fov.reason
    assert (fov.x, fov.y, fov.radius) == (104.5, 74.5, 75.0)
    out, _ = preprocess_image(image, SIZE)
    assert out.shape == (SIZE, SIZE, 3)


def test_a_disc_hidden_in_a_bright_background_takes_a_fallback(fundus):
    assert find_fov(hidden(fundus)).method != "circle"


def write(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def test_a_folder_is_preprocessed_with_fallbacks_and_unreadable_files_reported_and_a_rerun_resumes(fundus, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "broken.jpeg").write_bytes(b"not a jpeg")
    cut = write(src / "cut.jpeg", fundus.image).read_bytes()  # an interrupted download: OpenCV would pad it
    (src / "cut.jpeg").write_bytes(cut[: len(cut) * 2 // 5])
    sources = [
        ("good", write(src / "good.jpeg", fundus.image)),
        ("oval", write(src / "oval.jpeg", oval(fundus))),
        ("hidden", write(src / "hidden.png", hidden(fundus))),
        ("black", write(src / "black.jpeg", np.zeros((120, 160, 3), np.uint8))),
        ("broken", src / "broken.jpeg"),
        ("cut", src / "cut.jpeg"),
        ("missing", src / "missing.jpeg"),
    ]
    summary = preprocess_folder(sources, dst, SIZE, workers=2)
    assert summary["images"] == 4 and summary["size"] == SIZE
    assert summary["methods"] == {"circle": 1, "threshold": 1, "centre": 2}
    fallback = {item["image_id"]: item for item in summary["fallback"]}
    assert set(fallback) == {"oval", "hidden", "black"}
    assert fallback["oval"]["method"] == "threshold" and fallback["black"]["method"] == "centre"
    assert all(item["reason"] for item in fallback.values())
    assert summary["unreadable"] == [
        {"image_id": "broken", "path": str(src / "broken.jpeg")},
        {"image_id": "cut", "path": str(src / "cut.jpeg")},
        {"image_id": "missing", "path": str(src / "missing.jpeg")},
    ]
    outputs = sorted(dst.iterdir())
    assert [p.name for p in outputs] == ["black.jpeg", "good.jpeg", "hidden.jpeg", "oval.jpeg"]
    for path in outputs:
        with Image.open(path) as image:
            assert image.size == (SIZE, SIZE) and image.mode == "RGB"

    mtimes = {p.name: p.stat().st_mtime_ns for p in outputs}
    assert preprocess_folder(sources, dst, SIZE, workers=1) == summary
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == mtimes

    # A source newer than its output, or an output of another size, is redone.
    later = (dst / "good.jpeg").stat().st_mtime + 10
    os.utime(src / "good.jpeg", (later, later))
    assert preprocess_folder(sources, dst, SIZE, workers=1) == summary
    assert (dst / "good.jpeg").stat().st_mtime_ns != mtimes["good.jpeg"]
    assert (dst / "oval.jpeg").stat().st_mtime_ns == mtimes["oval.jpeg"]
    assert preprocess_folder(sources[:1], dst, 64, workers=1)["methods"]["circle"] == 1
    with Image.open(dst / "good.jpeg") as image:
        assert image.size == (64, 64)


def test_a_kept_output_that_was_cut_short_is_made_again(fundus, tmp_path):
    """A full disk or a kill may leave a JPEG without its end; the resume check reads its last bytes."""
    sources = [("good", write(tmp_path / "good.jpeg", fundus.image))]
    dst = tmp_path / "out"
    summary = preprocess_folder(sources, dst, SIZE, workers=1)
    whole = (dst / "good.jpeg").read_bytes()
    (dst / "good.jpeg").write_bytes(whole[: len(whole) // 2])  # newer than its source, the right size in its header
    assert preprocess_folder(sources, dst, SIZE, workers=1) == summary
    assert (dst / "good.jpeg").read_bytes() == whole


def test_png_outputs_also_resume_with_their_field_of_view(fundus, tmp_path):
    sources = [("oval", write(tmp_path / "oval.jpeg", oval(fundus)))]
    summary = preprocess_folder(sources, tmp_path / "out", SIZE, workers=1, suffix=".png")
    assert summary["methods"]["threshold"] == 1
    mtime = (tmp_path / "out" / "oval.png").stat().st_mtime_ns
    assert preprocess_folder(sources, tmp_path / "out", SIZE, workers=1, suffix=".png") == summary
    assert (tmp_path / "out" / "oval.png").stat().st_mtime_ns == mtime


def test_an_unknown_suffix_or_a_repeated_image_id_is_refused(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        preprocess_folder([], tmp_path, SIZE, workers=1, suffix=".bmp")
    with pytest.raises(ValueError, match="unique"):
        preprocess_folder([("a", tmp_path / "a.jpeg"), ("a", tmp_path / "b.jpeg")], tmp_path, SIZE, workers=1)


def eyeq_dataset(root: Path, fundus: FundusRendering) -> dict:
    """An EyeQ-format dataset: two label files, one image per split, the test image with its disc hidden."""
    for split, name, image in (("train", "10_left.jpeg", fundus.image), ("test", "11_right.jpeg", hidden(fundus))):
        (root / split).mkdir(parents=True)
        write(root / split / name, image)
        write_labels(root / f"Label_EyeQ_{split}.csv", [name], [0], [2])
    return {
        "format": "eyeq",
        "root": str(root),
        "labels": {"train": "Label_EyeQ_train.csv", "test": "Label_EyeQ_test.csv"},
        "images": {"train": "train", "test": "test"},
    }


def test_a_dataset_is_preprocessed_split_by_split_keeping_the_file_names(fundus, tmp_path):
    dataset = eyeq_dataset(tmp_path / "eyeq", fundus)
    result = run_preprocess(dataset, tmp_path / "out", tmp_path / "work", tmp_path / "summary.json", SIZE, workers=1)
    assert (tmp_path / "out/train/10_left.jpeg").is_file() and (tmp_path / "out/test/11_right.jpeg").is_file()
    assert result["folders"]["train"]["methods"]["circle"] == 1
    assert [item["image_id"] for item in result["folders"]["test"]["fallback"]] == ["11_right"]
    assert json.loads((tmp_path / "summary.json").read_text()) == result


def test_a_stopped_stage_resumes_from_its_work_folder_after_its_output_folder_was_deleted(fundus, tmp_path, caplog):
    """Snakemake deletes a stage's output folder before it reruns the stage: the work folder survives."""
    dataset = eyeq_dataset(tmp_path / "eyeq", fundus)
    out, work = tmp_path / "out", tmp_path / "work"
    (tmp_path / "eyeq/test/11_right.jpeg").rename(tmp_path / "later.jpeg")
    with pytest.raises(DataError):  # stopped part-way: one image done, one missing
        run_preprocess(dataset, out, work, tmp_path / "summary.json", SIZE, workers=1)
    done = work / "train/10_left.jpeg"
    made = done.stat().st_mtime_ns
    stale = work / "test/.11_right.abc123.part.jpeg"  # a write that a kill interrupted
    stale.write_bytes(b"half")
    (tmp_path / "later.jpeg").rename(tmp_path / "eyeq/test/11_right.jpeg")
    with caplog.at_level(logging.INFO, logger="comcl.datasets.preprocess"):
        run_preprocess(dataset, out, work, tmp_path / "summary.json", SIZE, workers=1)
    assert done.stat().st_mtime_ns == made and not stale.exists()
    assert any("1 already up to date" in record.getMessage() for record in caplog.records)
    assert (out / "train/10_left.jpeg").samefile(done) and (out / "test/11_right.jpeg").is_file()


def test_an_image_the_labels_name_but_the_folder_lacks_stops_the_stage_naming_it(fundus, tmp_path):
    dataset = eyeq_dataset(tmp_path / "eyeq", fundus)
    (tmp_path / "eyeq/test/11_right.jpeg").unlink()
    with pytest.raises(DataError, match=r"1 images named in Label_EyeQ_test.csv are missing or unreadable: .*11_right.jpeg"):
        run_preprocess(dataset, tmp_path / "out", tmp_path / "work", tmp_path / "summary.json", SIZE, workers=1)
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "out").exists()
