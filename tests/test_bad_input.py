"""Bad input fails with a message that names the file, the line and what to do; nothing is left half-written.
Configuration errors that can be known before any job runs fail when the workflow loads."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageFile

from comcl.datasets import chestxray14 as nih
from comcl.errors import DataError
from comcl.index.build import run_index
from tests.conftest import REPO
from tests.test_index import CHEST_FILES, EYEQ_LABELS_ONLY
from tests.tiny_workflow import SNAKEMAKE, over_the_demo


@pytest.fixture()
def eyeq_copy(synthetic_eyeq, tmp_path) -> Path:
    root = tmp_path / "eyeq"
    shutil.copytree(synthetic_eyeq[0], root)
    return root


@pytest.fixture()
def chest_copy(synthetic_chest, tmp_path) -> Path:
    root = tmp_path / "chest"
    shutil.copytree(synthetic_chest[0], root)
    return root


def index(root: Path, out: Path, section: dict, check: str = "header", val_share: float = 0.25, workers: int = 1) -> None:
    run_index(
        "dataset", {**section, "root": str(root)}, check, workers, val_share, 0, out / "index.parquet", out / "summary.json"
    )


def expect_error(
    root: Path, out: Path, section: dict, *fragments: str, check: str = "header", val_share: float = 0.25, workers: int = 1
) -> DataError:
    with pytest.raises(DataError) as caught:
        index(root, out, section, check, val_share, workers)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "What to do:" in message
    assert not (out / "index.parquet").exists() and not (out / "summary.json").exists()
    assert not out.exists() or not list(out.glob(".*.part*"))
    return caught.value


def edit_line(path: Path, line: int, old: str, new: str) -> str:
    lines = path.read_text().splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new)
    path.write_text("".join(lines))
    return lines[line - 1]


def test_missing_image(eyeq_copy, tmp_path):
    victim = sorted((eyeq_copy / "train").iterdir())[3]
    victim.unlink()
    labels = eyeq_copy / "Label_EyeQ_train.csv"
    line = next(i for i, text in enumerate(labels.read_text().splitlines(), 1) if victim.name in text)
    error = expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, str(labels), f"line {line}", victim.name, "missing")
    assert error.line == line


def test_unreadable_image(eyeq_copy, tmp_path):
    victim = min((eyeq_copy / "test").iterdir())
    victim.write_bytes(b"this is not a JPEG")
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, "Label_EyeQ_test.csv", victim.name, "unreadable")


def encoded(victim: Path, form: str) -> bytes:
    """The pixels of ``victim`` encoded as ``form`` (JPEG or PNG): the image check goes by content, not by name."""
    buffer = io.BytesIO()
    with Image.open(victim) as image:
        image.save(buffer, format=form)
    return buffer.getvalue()


def cut(victim: Path, form: str) -> None:
    """Leave ``victim`` a ``form`` file cut at 40 %, as an interrupted download or copy does."""
    data = encoded(victim, form)
    victim.write_bytes(data[: len(data) * 2 // 5])


def corrupt(victim: Path) -> None:
    """Leave ``victim`` a JPEG with two of its middle bytes overwritten. JPEG has no checksum: libjpeg notices
    only damage that puts its decoder out of step, as a stray marker (here: the end of image) always does."""
    data = bytearray(encoded(victim, "JPEG"))
    data[len(data) // 2 : len(data) // 2 + 2] = b"\xff\xd9"
    victim.write_bytes(bytes(data))


def line_of(labels: Path, name: str) -> int:
    return next(number for number, text in enumerate(labels.read_text().splitlines(), 1) if name in text)


@pytest.mark.parametrize("check", ["header", "decode"])
@pytest.mark.parametrize("form", ["JPEG", "PNG"])
def test_a_cut_eyeq_image_is_refused_with_its_line(eyeq_copy, tmp_path, form, check):
    victim = sorted((eyeq_copy / "test").iterdir())[1]
    cut(victim, form)
    labels = eyeq_copy / "Label_EyeQ_test.csv"
    line = line_of(labels, victim.name)
    error = expect_error(
        eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, str(labels), f"line {line}: ", victim.name, "truncated", check=check
    )
    assert error.line == line


@pytest.mark.parametrize("check", ["header", "decode"])
@pytest.mark.parametrize("form", ["JPEG", "PNG"])
def test_a_cut_chest_image_is_refused_with_its_line(chest_copy, tmp_path, form, check):
    victim = sorted((chest_copy / "images").iterdir())[2]
    cut(victim, form)
    entry = chest_copy / "Data_Entry_2017.csv"
    line = line_of(entry, victim.name)
    error = expect_error(
        chest_copy, tmp_path / "out", CHEST_FILES, str(entry), f"line {line}: ", victim.name, "truncated", check=check
    )
    assert error.line == line


def test_a_corrupt_jpeg_passes_the_header_check_and_is_refused_by_decode_with_its_line(eyeq_copy, tmp_path):
    victim = sorted((eyeq_copy / "train").iterdir())[2]
    corrupt(victim)
    index(eyeq_copy, tmp_path / "header", EYEQ_LABELS_ONLY, check="header")
    labels = eyeq_copy / "Label_EyeQ_train.csv"
    line = line_of(labels, victim.name)
    error = expect_error(
        eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, f"line {line}: ", victim.name, "corrupt", "libjpeg", check="decode"
    )
    assert error.line == line


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(lambda victim: cut(victim, "PNG"), "truncated"), (corrupt, "corrupt")],
    ids=["cut PNG", "corrupt JPEG"],
)
def test_a_bad_chest_image_stops_the_quality_score_with_its_line(chest_copy, tmp_path, damage, reason):
    """With the image check at ``exists``, the quality score is the first to decode the images, on worker processes."""
    name = (chest_copy / "train_val_list.txt").read_text().split()[0]
    damage(chest_copy / "images" / name)
    entry = chest_copy / "Data_Entry_2017.csv"
    line = line_of(entry, name)
    error = expect_error(
        chest_copy,
        tmp_path / "out",
        CHEST_FILES,
        str(entry),
        f"line {line}: ",
        name,
        reason,
        "quality score",
        check="exists",
        workers=2,
    )
    assert error.line == line


def test_decode_refuses_a_broken_png_even_where_pil_is_told_to_load_truncated_images(chest_copy, tmp_path, monkeypatch):
    """A cut PNG whose end chunk was put back passes the header check; PIL would pad it with grey."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    victim = sorted((chest_copy / "images").iterdir())[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 2 // 5] + data[-12:])
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, victim.name, "truncated", check="decode")
    assert ImageFile.LOAD_TRUNCATED_IMAGES, "the setting is left as it was"


def test_missing_column(eyeq_copy, tmp_path):
    labels = eyeq_copy / "Label_EyeQ_train.csv"
    edit_line(labels, 1, "DR_grade", "level")
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, str(labels), "line 1", "'DR_grade'", ",image,quality,DR_grade")


def test_unknown_grade(eyeq_copy, tmp_path):
    labels = eyeq_copy / "Label_EyeQ_test.csv"
    text = labels.read_text().splitlines()[4]
    edit_line(labels, 5, text, text.rsplit(",", 1)[0] + ",7")
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, str(labels), "line 5", "DR grade", "'7'")


def test_unknown_quality(eyeq_copy, tmp_path):
    labels = eyeq_copy / "Label_EyeQ_train.csv"
    parts = labels.read_text().splitlines()[2].split(",")
    edit_line(labels, 3, ",".join(parts), ",".join([*parts[:2], "good", parts[3]]))
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, "line 3", "quality", "'good'")


def test_duplicate_image_ids(eyeq_copy, tmp_path):
    labels = eyeq_copy / "Label_EyeQ_train.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([*lines, "99," + lines[2].split(",", 1)[1]]) + "\n")
    name = lines[2].split(",")[1]
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, "listed more than once", name, f"lines 3, {len(lines) + 1}")


def test_image_in_both_splits(eyeq_copy, tmp_path):
    train = (eyeq_copy / "Label_EyeQ_train.csv").read_text().splitlines()
    test = eyeq_copy / "Label_EyeQ_test.csv"
    test.write_text(test.read_text() + "99," + train[1].split(",", 1)[1] + "\n")
    shutil.copy(eyeq_copy / "train" / train[1].split(",")[1], eyeq_copy / "test")
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, "both the train and the test split", str(test))


def test_empty_split(eyeq_copy, tmp_path):
    labels = eyeq_copy / "Label_EyeQ_test.csv"
    labels.write_text(labels.read_text().splitlines()[0] + "\n")
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, str(labels), "no rows")


def test_missing_label_file(eyeq_copy, tmp_path):
    (eyeq_copy / "Label_EyeQ_train.csv").unlink()
    expect_error(eyeq_copy, tmp_path / "out", EYEQ_LABELS_ONLY, "Label_EyeQ_train.csv", "file not found")


def test_unknown_finding(chest_copy, tmp_path):
    entry = chest_copy / "Data_Entry_2017.csv"
    line = 4
    old = entry.read_text().splitlines()[line - 1].split(",")[1]
    edit_line(entry, line, "," + old + ",", ",Pneumonia|Covid,")
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, str(entry), f"line {line}", "'Covid'")


def test_chest_missing_column(chest_copy, tmp_path):
    entry = chest_copy / "Data_Entry_2017.csv"
    edit_line(entry, 1, "Patient ID", "Patient")
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, str(entry), "'Patient ID'", "Image Index,Finding Labels")


def test_chest_duplicate_rows(chest_copy, tmp_path):
    entry = chest_copy / "Data_Entry_2017.csv"
    lines = entry.read_text().splitlines()
    entry.write_text("\n".join([*lines, lines[1]]) + "\n")
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, "listed more than once", f"lines 2, {len(lines) + 1}")


def test_chest_bbox_for_unknown_image(chest_copy, tmp_path):
    boxes = chest_copy / "BBox_List_2017.csv"
    boxes.write_text(boxes.read_text() + "99999999_000.png,Mass,1,2,30,40\n")
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, str(boxes), "99999999_000.png", "same release")


def test_chest_bbox_unknown_finding(chest_copy, tmp_path):
    boxes = chest_copy / "BBox_List_2017.csv"
    image = (chest_copy / "Data_Entry_2017.csv").read_text().splitlines()[1].split(",")[0]
    boxes.write_text(boxes.read_text() + f"{image},Hernia,1,2,30,40\n")
    n = len(boxes.read_text().splitlines())
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, f"line {n}", "'Hernia'")


@pytest.mark.parametrize("box", ["nan,2,30,40", "1,2,inf,40"])
def test_chest_bbox_with_a_nan_or_infinite_number(chest_copy, tmp_path, box):
    boxes = chest_copy / "BBox_List_2017.csv"
    image = (chest_copy / "Data_Entry_2017.csv").read_text().splitlines()[1].split(",")[0]
    boxes.write_text(boxes.read_text() + f"{image},Mass,{box}\n")
    n = len(boxes.read_text().splitlines())
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, f"line {n}", "NaN or infinite")


def test_chest_bad_quality_csv(chest_copy, tmp_path):
    (chest_copy / "quality.csv").write_text("Image Index,quality\nnot_there.png,low\n")
    expect_error(
        chest_copy, tmp_path / "out", {**CHEST_FILES, "quality_csv": "quality.csv"}, "have no quality label", "quality.csv"
    )
    (chest_copy / "quality.csv").write_text("Image Index,quality\nx.png,medium\n")
    expect_error(chest_copy, tmp_path / "out", {**CHEST_FILES, "quality_csv": "quality.csv"}, "line 2", "'medium'")


def test_labels_only_chest_data_without_quality_labels_is_refused_naming_the_images_folder(chest_copy, tmp_path):
    """With check_images none nothing else opens an image: the quality score would be the first, deep in the run."""
    shutil.rmtree(chest_copy / "images")
    expect_error(
        chest_copy,
        tmp_path / "out",
        CHEST_FILES,
        f"images folder {chest_copy / 'images'} does not exist",
        "quality_csv",
        "put the images in",
        check="none",
    )


def test_chest_image_in_no_split_list(chest_copy, tmp_path):
    listing = chest_copy / "test_list.txt"
    names = listing.read_text().splitlines()
    listing.write_text("\n".join(names[1:]) + "\n")
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, "in no split list", names[0])


@pytest.mark.parametrize(("share", "empty"), [(0.05, "validation"), (0.95, "train")])
def test_a_val_share_that_leaves_a_split_empty_is_named_with_the_fix(eyeq_copy, tmp_path, share, empty):
    # The tiny EyeQ set has 6 training patients: 0.05 of them rounds to none, 0.95 to all.
    labels = eyeq_copy / "Label_EyeQ_train.csv"
    expect_error(
        eyeq_copy,
        tmp_path / "out",
        EYEQ_LABELS_ONLY,
        str(labels),
        f"index.val_share {share}",
        "6 training patients",
        f"leaves the {empty} split empty",
        "between 0.167 and 0.833",
        val_share=share,
    )


def test_a_test_split_wholly_in_the_box_list_is_refused(chest_copy, tmp_path):
    boxes = chest_copy / "BBox_List_2017.csv"
    test = (chest_copy / "test_list.txt").read_text().split()
    boxes.write_text(boxes.read_text() + "".join(f"{name},Mass,1,2,30,40\n" for name in test))
    expect_error(chest_copy, tmp_path / "out", CHEST_FILES, str(chest_copy / nih.SPLIT_FILES["test"]), "no test image is left")


def load(tmp_path: Path, overlay: dict) -> str:
    """A dry run of the demo configuration with ``overlay`` merged over it; its output, having failed."""
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    command = [*SNAKEMAKE, "-n", *over_the_demo(tmp_path / "overlay.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0, "the workflow loaded"
    return result.stdout + result.stderr


def test_patches_larger_than_the_fine_tuning_images_are_refused_when_the_workflow_loads(tmp_path):
    output = load(tmp_path, {"patches": {"size": 96}})
    assert "patches.size 96 is larger than finetune.input_size 80" in output
    assert "set patches.size to at most 80" in output
    assert "Traceback" not in output and "PlanError" not in output  # the workflow's error, in a few lines
