"""The fetch stage on data served from 127.0.0.1: real EyeQ label files, NIH files over https, a Kaggle client, an IDRiD zip."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from comcl.datasets import idrid
from comcl.datasets.fetch import check_idrid, fetch_source, kaggle_client
from comcl.download import md5sum
from comcl.errors import DataError
from comcl.sources import needs

EYEQ_MD5 = {"train": "b682c36cbce65666fdc6f6970e180dc7", "test": "aaffe5731ff61868b85ce2ec1978807f"}
NIH_FILES = ["Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt"]


@pytest.fixture(autouse=True)
def no_kaggle_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))


def eyeq_source(root: Path, **download) -> dict:
    """A dataset section as the validated configuration hands it over: the schema's defaults filled in."""
    return {
        "format": "eyeq",
        "root": str(root),
        "labels": {"train": "Label_EyeQ_train.csv", "test": "Label_EyeQ_test.csv"},
        "images": {"train": "train", "test": "test"},
        "download": {"keep_archives": False, **download},
    }


def chest_source(root: Path, **download) -> dict:
    return {
        "format": "chestxray14",
        "root": str(root),
        "data_entry": "Data_Entry_2017.csv",
        "bbox_list": "BBox_List_2017.csv",
        "split_lists": {"train": "train_val_list.txt", "test": "test_list.txt"},
        "images": "images",
        "quality_csv": None,
        "download": {"keep_archives": False, **download},
    }


KAGGLE = {
    "competition": "diabetic-retinopathy-detection",
    "files": {"train": ["train.zip.001", "train.zip.002"], "test": ["test.zip.001"]},
}


def test_missing_pieces_are_named_with_the_step_that_provides_them(tmp_path, monkeypatch):
    labels = {split: {"urls": [f"http://127.0.0.1:1/{split}.csv"]} for split in ("train", "test")}
    found = {need.what: need for need in needs(eyeq_source(tmp_path, labels=labels, kaggle=KAGGLE))}
    assert (
        found["EyeQ train labels"].automatic and "downloaded from http://127.0.0.1:1/train.csv" in found["EyeQ train labels"].step
    )
    images = found["EyePACS train images"]
    assert not images.automatic and images.path == tmp_path / "train"
    assert "accept the competition's rules" in images.step and "train.zip.001, train.zip.002" in images.step
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    assert all(need.automatic for need in needs(eyeq_source(tmp_path, labels=labels, kaggle=KAGGLE)))

    chest = {need.what: need for need in needs(chest_source(tmp_path))}
    assert not any(need.automatic for need in chest.values())
    assert "nihcc.app.box.com" in chest["ChestX-ray14 images"].step and len(chest) == 5

    tree = needs({"format": "idrid", "root": str(tmp_path)})
    assert [need.automatic for need in tree] == [False] and "register" in tree[0].step
    (tmp_path / "A. Segmentation.zip").write_bytes(b"")
    assert [need.automatic for need in needs({"format": "idrid", "root": str(tmp_path)})] == [True]


def test_pieces_that_need_a_person_stop_the_stage_before_any_download(http_server, tmp_path):
    labels = {split: {"urls": [f"{http_server.url}/{split}.csv"]} for split in ("train", "test")}
    with pytest.raises(DataError, match="the data of eyeq are incomplete; provide:") as error:
        fetch_source("eyeq", eyeq_source(tmp_path, labels=labels, kaggle=KAGGLE), tmp_path / "source.json")
    assert "EyePACS train images" in str(error.value) and "EyePACS test images" in str(error.value)
    assert "EyeQ train labels" not in str(error.value)
    assert http_server.requests == []


def test_eyeq_labels_are_downloaded_md5_checked_and_rows_without_an_image_are_listed(http_server, shared_data, tmp_path):
    for split in ("train", "test"):
        http_server.files[f"/mirror/Label_EyeQ_{split}.csv"] = (shared_data / f"eyeq/Label_EyeQ_{split}.csv").read_bytes()
        (tmp_path / split).mkdir()
    (tmp_path / "train/10009_left.jpeg").write_bytes(b"jpeg")
    (tmp_path / "test/1_left.jpeg").write_bytes(b"jpeg")
    labels = {
        split: {
            "urls": [f"{http_server.url}/gone/Label_EyeQ_{split}.csv", f"{http_server.url}/mirror/Label_EyeQ_{split}.csv"],
            "md5": md5,
        }
        for split, md5 in EYEQ_MD5.items()
    }
    with pytest.raises(DataError, match=r"12542 of 12543 labelled images are not in .*train") as error:
        fetch_source("eyeq", eyeq_source(tmp_path, labels=labels), tmp_path / "source.json")
    assert "Label_EyeQ_train.csv, line 3" in str(error.value)
    assert "    line 3: 10009_right.jpeg" in str(error.value) and "... and 12532 more" in str(error.value)
    assert {split: md5sum(tmp_path / f"Label_EyeQ_{split}.csv") for split in EYEQ_MD5} == EYEQ_MD5
    assert not (tmp_path / "source.json").exists()


def test_a_label_file_that_is_not_the_published_one_is_refused_and_not_kept(http_server, shared_data, tmp_path):
    altered = (shared_data / "eyeq/Label_EyeQ_test.csv").read_bytes().replace(b",0,0\n", b",0,1\n", 1)
    http_server.files["/Label_EyeQ_test.csv"] = altered
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "1_left.jpeg").write_bytes(b"jpeg")
    shutil.copy(shared_data / "eyeq/Label_EyeQ_train.csv", tmp_path)
    labels = {split: {"urls": [f"{http_server.url}/Label_EyeQ_{split}.csv"], "md5": md5} for split, md5 in EYEQ_MD5.items()}
    with pytest.raises(DataError, match=f"MD5 is [0-9a-f]{{32}}, not the expected {EYEQ_MD5['test']}"):
        fetch_source("eyeq", eyeq_source(tmp_path, labels=labels), tmp_path / "source.json")
    assert not (tmp_path / "Label_EyeQ_test.csv").exists() and not (tmp_path / "Label_EyeQ_test.csv.part").exists()


class FakeKaggle:
    """The client's download call, served from memory; records what was asked."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.calls = files, []

    def competition_download_file(self, competition, file_name, path=None, force=False, quiet=False, unzip=False):
        self.calls.append((competition, file_name, unzip))
        Path(path, file_name).write_bytes(self.files[file_name])


def test_eyepacs_images_come_from_kaggle_in_parts_and_unlabelled_images_are_counted(synthetic_eyeq, tmp_path, monkeypatch):
    source_root, _ = synthetic_eyeq
    root = tmp_path / "eyeq"
    shutil.copytree(source_root, root, ignore=shutil.ignore_patterns("train"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for image in sorted((source_root / "train").iterdir()):
            archive.write(image, f"train/{image.name}")
        archive.writestr("train/99999_left.jpeg", b"an EyePACS image that EyeQ does not label")
    data = buffer.getvalue()
    client = FakeKaggle({"train.zip.001": data[: len(data) // 2], "train.zip.002": data[len(data) // 2 :]})
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")

    result = fetch_source("eyeq", eyeq_source(root, kaggle=KAGGLE), tmp_path / "source.json", kaggle=lambda: client)
    assert [name for _, name, _ in client.calls] == ["train.zip.001", "train.zip.002"]
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(
        [*(p.name for p in (source_root / "train").iterdir()), "99999_left.jpeg"]
    )
    train = result["images"]["train"]
    assert (train["unlabelled"], train["unlabelled_examples"]) == (1, ["99999_left.jpeg"])
    assert train["labelled"] == len(list((source_root / "train").iterdir()))
    assert sorted(p.name for p in (root / "archives").iterdir()) == ["train.zip.001.extracted"]
    assert json.loads((tmp_path / "source.json").read_text()) == result

    def no_client():
        raise AssertionError("the images are there: no client needed")

    fetch_source("eyeq", eyeq_source(root, kaggle=KAGGLE), tmp_path / "source.json", kaggle=no_client)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def serve_chest(server, root: Path, images: list[Path]) -> dict:
    for name in NIH_FILES:
        server.files[f"/{name}"] = (root / name).read_bytes()
    half = len(images) // 2
    archives = []
    for number, chunk in enumerate([images[:half], images[half:]], start=1):
        name = f"images_{number:03d}.tar.gz"
        server.files[f"/{name}"] = tar_gz({f"images/{image.name}": image.read_bytes() for image in chunk})
        archives.append({"name": name, "urls": [f"{server.url}/{name}"]})
    return {"files": {name: [f"{server.url}/{name}"] for name in NIH_FILES}, "archives": archives}


def test_chest_labels_and_archives_are_downloaded_recorded_and_extracted_into_one_folder(https_server, synthetic_chest, tmp_path):
    source_root, _ = synthetic_chest
    images = sorted((source_root / "images").iterdir())
    root = tmp_path / "nih"
    source = chest_source(root, **serve_chest(https_server, source_root, images))
    result = fetch_source("chestxray14", source, tmp_path / "source.json")
    assert sorted(p.name for p in (root / "images").iterdir()) == [image.name for image in images]
    assert result["images"]["labelled"] == result["data_entry"]["rows"] == len(images)
    manifest = json.loads((root / "checksums.json").read_text())
    assert sorted(manifest) == sorted([*NIH_FILES, "images_001.tar.gz", "images_002.tar.gz"])
    assert sorted(p.name for p in (root / "archives").iterdir()) == ["images_001.tar.gz.extracted", "images_002.tar.gz.extracted"]

    requests = len(https_server.requests)
    fetch_source("chestxray14", chest_source(root, **serve_chest(https_server, source_root, images)), tmp_path / "source.json")
    assert len(https_server.requests) == requests


def test_an_archive_is_recorded_in_the_manifest_only_once_it_extracted(https_server, synthetic_chest, tmp_path):
    source_root, _ = synthetic_chest
    images = sorted((source_root / "images").iterdir())
    root = tmp_path / "nih"
    spec = serve_chest(https_server, source_root, images)
    good = https_server.files["/images_001.tar.gz"]
    https_server.files["/mirror/images_001.tar.gz"] = good[: len(good) // 2]  # a mirror with a broken copy
    spec["archives"][0]["urls"] = [f"{https_server.url}/gone/images_001.tar.gz", f"{https_server.url}/mirror/images_001.tar.gz"]
    with pytest.raises(DataError, match="images_001.tar.gz: (cannot read the archive|neither a tar nor a zip)"):
        fetch_source("chestxray14", chest_source(root, **spec), tmp_path / "source.json")
    assert sorted(json.loads((root / "checksums.json").read_text())) == sorted(NIH_FILES)  # the label files, not the archive

    (root / "archives/images_001.tar.gz").unlink()  # as the error says; the mirror is fixed
    https_server.files["/mirror/images_001.tar.gz"] = good
    fetch_source("chestxray14", chest_source(root, **spec), tmp_path / "source.json")
    manifest = json.loads((root / "checksums.json").read_text())
    assert manifest["images_001.tar.gz"] == {"sha256": hashlib.sha256(good).hexdigest(), "size": len(good)}


def test_chest_images_missing_from_the_archives_are_listed_with_their_rows(https_server, synthetic_chest, tmp_path):
    source_root, _ = synthetic_chest
    images = sorted((source_root / "images").iterdir())
    root = tmp_path / "nih"
    with pytest.raises(DataError, match=r"1 of \d+ labelled images are not in") as error:
        source = chest_source(root, **serve_chest(https_server, source_root, images[1:]))
        fetch_source("chestxray14", source, tmp_path / "source.json")
    assert f": {images[0].name}" in str(error.value) and "Data_Entry_2017.csv, line" in str(error.value)


def zip_tree(root: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted((root / idrid.SEGMENTATION_DIR).rglob("*")):
            archive.write(path, path.relative_to(root).as_posix())


def test_the_idrid_zip_is_extracted_and_its_tree_counted(synthetic_idrid, tmp_path):
    source_root, _ = synthetic_idrid
    zip_tree(source_root, tmp_path / "A. Segmentation.zip")
    source = {
        "format": "idrid",
        "root": str(tmp_path),
        "archive": "A. Segmentation.zip",
        "expected_images": {"train": 3, "test": 2},
    }
    result = fetch_source("eyeq lesions", source, tmp_path / "source.json")
    assert (result["train"]["images"], result["test"]["images"]) == (3, 2)
    for split in ("train", "test"):
        masks = result[split]["masks"]
        assert set(masks) == set(idrid.MASK_DIRS) and masks["OD"] == result[split]["images"]


def test_an_incomplete_idrid_tree_names_every_problem(synthetic_idrid, tmp_path):
    source_root, _ = synthetic_idrid
    shutil.copytree(source_root / idrid.SEGMENTATION_DIR, tmp_path / idrid.SEGMENTATION_DIR)
    for split in ("train", "test"):
        shutil.rmtree(idrid.mask_path(tmp_path, split, "HE", 1).parent)
    orphan = idrid.mask_path(tmp_path, "train", "MA", 40)
    orphan.write_bytes(b"")
    with pytest.raises(DataError, match="the IDRiD tree is incomplete") as error:
        check_idrid(tmp_path, {"train": 54, "test": 27})
    message = str(error.value)
    assert "3 images, the release has 54" in message and "2 images, the release has 27" in message
    assert "no HE masks in " in message and "b. Testing Set/2. Haemorrhages" in message
    assert "masks of images that are not there: IDRiD_40" in message


def test_the_official_kaggle_client_signs_in_with_the_environment_token(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    client = kaggle_client()
    assert type(client).__name__ == "KaggleApi" and callable(client.competition_download_file)


def test_a_kaggle_download_that_fails_says_what_to_check(synthetic_eyeq, tmp_path, monkeypatch):
    source_root, _ = synthetic_eyeq
    root = tmp_path / "eyeq"
    shutil.copytree(source_root, root, ignore=shutil.ignore_patterns("train"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")

    class RulesNotAccepted(FakeKaggle):
        def competition_download_file(self, competition, file_name, path=None, force=False, quiet=False, unzip=False):
            raise RuntimeError("403 Client Error: Forbidden")

    with pytest.raises(DataError, match="could not download train.zip.001 of diabetic-retinopathy-detection: 403") as error:
        fetch_source("eyeq", eyeq_source(root, kaggle=KAGGLE), tmp_path / "source.json", kaggle=lambda: RulesNotAccepted({}))
    assert "accept the competition's rules" in str(error.value)
    assert not (root / "archives/train.zip.001").exists()
