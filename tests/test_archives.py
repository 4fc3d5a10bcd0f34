"""Archive extraction: several archives into one folder, split zips, reruns after a crash, unsafe members."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from comcl.archives import extract
from comcl.errors import DataError


def make_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for name, data in files.items():
            zip_file.writestr(name, data)
    return path


def image(index: int) -> tuple[str, bytes]:
    return f"images/{index:08d}_000.png", bytes([index]) * (100 + index)


def test_two_tar_gz_archives_go_into_one_folder(tmp_path):
    first = make_tar(tmp_path / "images_001.tar.gz", dict(map(image, range(3))))
    second = make_tar(
        tmp_path / "images_002.tar.gz", dict(map(image, range(3, 5))), links={"images/latest.png": "00000004_000.png"}
    )
    paths = extract([first, second], tmp_path / "chest")
    names = [f"images/{index:08d}_000.png" for index in range(5)]
    assert paths == [tmp_path / "chest" / name for name in [*names, "images/latest.png"]]
    assert all(path.read_bytes() == image(index)[1] for index, path in enumerate(paths[:5]))
    assert (tmp_path / "chest/images/latest.png").readlink() == Path("00000004_000.png")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "chest",
        "images_001.tar.gz",
        "images_002.tar.gz",
    ]  # no staging left


def test_a_zip_is_recognised_by_its_content_and_filtered(tmp_path):
    archive = make_zip(
        tmp_path / "download", {"EyeQ/train/1_left.jpeg": b"left", "EyeQ/train/1_right.jpeg": b"right", "EyeQ/README": b"r"}
    )
    paths = extract([archive], tmp_path / "out", strip_components=1, members=lambda name: name.endswith(".jpeg"))
    assert paths == [tmp_path / "out/train/1_left.jpeg", tmp_path / "out/train/1_right.jpeg"]
    assert [path.read_bytes() for path in paths] == [b"left", b"right"]
    assert not (tmp_path / "out/README").exists()


def test_a_byte_split_zip_is_joined_from_its_first_part(tmp_path):
    files = {f"train/{index}_left.jpeg": bytes([index]) * 5000 for index in range(4)}
    data = make_zip(tmp_path / "whole.zip", files).read_bytes()
    (tmp_path / "train.zip.001").write_bytes(data[:7000])
    (tmp_path / "train.zip.002").write_bytes(data[7000:])
    paths = extract([tmp_path / "train.zip.001"], tmp_path / "out")
    assert {path.relative_to(tmp_path / "out").as_posix(): path.read_bytes() for path in paths} == files
    assert extract([tmp_path / "train.zip.001", tmp_path / "train.zip.002"], tmp_path / "out") == paths


def test_strip_components_counts_a_leading_dot_as_tar_does(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", {"./data/images/a.png": b"a", "./data/b.png": b"b", "top.txt": b"t"})
    paths = extract([archive], tmp_path / "out", strip_components=2)
    assert paths == [tmp_path / "out/images/a.png", tmp_path / "out/b.png"]


def test_a_rerun_after_an_interrupted_extraction_finishes_the_job(tmp_path):
    archive = make_tar(tmp_path / "images_001.tar.gz", dict(map(image, range(4))))
    paths = extract([archive], tmp_path / "out")
    kept = paths[0].stat()
    paths[1].unlink()
    paths[2].write_bytes(b"half")
    (tmp_path / ".out.crashed.part").mkdir()  # what a killed run leaves: never read
    assert extract([archive], tmp_path / "out") == paths
    assert all(path.read_bytes() == image(index)[1] for index, path in enumerate(paths))
    assert (paths[0].stat().st_ino, paths[0].stat().st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # not written again


@pytest.mark.parametrize(
    ("files", "links", "message"),
    [
        ({"images/a.png": b"a", "../evil": b"x"}, {}, "member '../evil' would be written outside the destination"),
        ({"/etc/evil": b"x"}, {}, "member '/etc/evil' would be written outside"),
        ({"images/a.png": b"a"}, {"images/link": "../../evil"}, "member 'images/link' is a link to '../../evil', outside"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, files, links, message):
    archive = make_tar(tmp_path / "bad.tar.gz", files, links)
    with pytest.raises(DataError, match=message) as error:
        extract([archive], tmp_path / "out")
    assert str(archive) in str(error.value)
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_a_corrupt_archive_is_named_with_what_to_do(tmp_path):
    data = make_tar(tmp_path / "images_001.tar.gz", dict(map(image, range(20)))).read_bytes()
    (tmp_path / "images_001.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataError, match=r"images_001.tar.gz: cannot read the archive .*\n.*delete it so that it is downloaded again"
    ):
        extract([tmp_path / "images_001.tar.gz"], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []

    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(DataError, match="neither a tar nor a zip archive"):
        extract([tmp_path / "notes.txt"], tmp_path / "out")
