"""Archive extraction: several archives into one folder, split zips, reruns after a crash, unsafe members."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from comcl.archives import extract
from comcl.errors import DataError


def make_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    return ordered_tar(path, [*files.items(), *(links or {}).items()])


def ordered_tar(path: Path, members: list[tuple[str, bytes | str]]) -> Path:
    """A tar.gz of ``members`` in this order: bytes are a file's data, a string a symbolic link's target."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    return ordered_zip(path, list(files.items()))


def ordered_zip(path: Path, members: list[tuple[str, bytes | str]]) -> Path:
    """A zip of ``members`` in this order; a string is a symbolic link's target, stored as Info-ZIP does on unix (``zip -y``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for name, content in members:
            if isinstance(content, str):
                info = zipfile.ZipInfo(name)
                info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
                zip_file.writestr(info, content)
            else:
                zip_file.writestr(name, content)
    return path


def split(archive: Path, size: int) -> Path:
    """``archive`` cut into ``<name>.001``, ``<name>.002``, ... of ``size`` bytes; the first part."""
    data = archive.read_bytes()
    for number, start in enumerate(range(0, len(data), size), start=1):
        archive.with_name(f"{archive.name}.{number:03d}").write_bytes(data[start : start + size])
    archive.unlink()
    return archive.with_name(archive.name + ".001")


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


# Each link stays inside by its name (d/x/z -> ../.. is d/x/.. = d, by name), but followed one after the
# other they climb: FILE would land three folders above the destination.
CHAINED_LINKS = [("d/x", ".."), ("d/x/z", "../.."), ("d/x/z/w", "../../.."), ("d/x/z/w/FILE", b"written outside")]


@pytest.mark.parametrize(
    "make",
    [
        lambda path: ordered_tar(path, CHAINED_LINKS),
        lambda path: ordered_zip(path, CHAINED_LINKS),
        lambda path: split(ordered_tar(path, CHAINED_LINKS), 100),
    ],
    ids=["tar", "zip", "split tar"],
)
def test_chained_links_cannot_carry_a_file_out_of_the_destination(tmp_path, make):
    destination = tmp_path / "a/b/c/out"
    archive = make(tmp_path / "chained")
    message = r"member 'd/x/z' would be written through the link 'd/x'\n.*What to do: do not unpack it"
    with pytest.raises(DataError, match=message) as error:
        extract([archive], destination)
    assert str(archive) in str(error.value)
    assert list(destination.iterdir()) == []
    assert [path for path in tmp_path.rglob("*") if path.name == "FILE"] == []


def test_a_zip_keeps_its_links_and_refuses_one_that_leads_out(tmp_path):
    files = dict(map(image, range(2)))
    archive = ordered_zip(tmp_path / "links.zip", [*files.items(), ("images/latest.png", "00000001_000.png")])
    paths = extract([archive], tmp_path / "out")
    assert (tmp_path / "out/images/latest.png").readlink() == Path("00000001_000.png")
    assert paths[-1].read_bytes() == files["images/00000001_000.png"]
    assert extract([archive], tmp_path / "out") == paths  # the link is found present

    for target in ("../../evil", "/etc"):
        archive = ordered_zip(tmp_path / "bad.zip", [("images/link", target), ("images/a.png", b"a")])
        with pytest.raises(DataError, match=f"member 'images/link' is a link to '{target}', outside the destination"):
            extract([archive], tmp_path / "bad")
        assert list((tmp_path / "bad").iterdir()) == []


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("images/same", "."), ("images/same/a.png", b"a")], "member 'images/same/a.png' would be written through the link"),
        ([("top/x", "."), ("top/x/y", "z")], "member 'top/x/y' would be written through the link 'top/x'"),  # with strip 1
        ([("images/link", "/etc/passwd")], "member 'images/link' is a link to '/etc/passwd', outside"),
        # a climbs from p/q/b, which is p: p/.. is the destination and a one folder above it.
        ([("p/q/a", "b/../.."), ("p/q/b", "..")], r"member 'p/q/a' is a link to 'b/../..', which climbs \(..\) after a folder"),
        ([("images/b", "."), ("images/a", "b/../..")], r"member 'images/a' is a link to 'b/../..', which climbs"),  # b before a
    ],
)
def test_members_through_links_and_links_that_lead_out_are_refused(tmp_path, members, message):
    archive = ordered_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(DataError, match=message):
        extract([archive], tmp_path / "out", strip_components=1 if members[0][0].startswith("top/") else 0)
    assert list((tmp_path / "out").iterdir()) == []


def test_links_already_in_the_destination_are_not_written_through(tmp_path):
    destination = tmp_path / "out"
    extract([ordered_tar(tmp_path / "first.tar.gz", [("p/up", "..")])], destination)  # p/up is the destination: allowed
    second = ordered_tar(tmp_path / "second.tar.gz", [("p/up/q", "../..")])
    with pytest.raises(DataError, match=f"member 'p/up/q' would be written through {destination / 'p/up'}, a symbolic link"):
        extract([second], destination)

    (tmp_path / "elsewhere").mkdir()
    (destination / "images").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=f"What to do: replace the link {destination / 'images'} by a real folder"):
        extract([make_tar(tmp_path / "images.tar.gz", dict(map(image, range(2))))], destination)
    assert list((tmp_path / "elsewhere").iterdir()) == []
