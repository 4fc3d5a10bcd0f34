"""Dataset archives unpacked into one folder, safely and so that an interrupted run can simply be run again.

Supported: tar (plain, gzip, bzip2 or xz compressed) and zip, recognised by their content rather than
their name; and byte-split parts ``<name>.001``, ``<name>.002``, ... (as ``split -b`` or 7-Zip's
"split to volumes" make them from one tar or zip), which are joined in order into a temporary file
beside the destination first, so they need as much free space again while that lasts. Not
supported: zip's own spanned format (``.zip`` with ``.z01``, ``.z02``, ...), which Python's zipfile
cannot read (join it first with ``zip -s 0 name.zip --out joined.zip``), and 7z, rar or any other format.

Each archive is unpacked into a temporary sibling of the destination and its files are then moved
into place one by one (``os.replace``), so a file under its final name is always complete, and an
archive found corrupt half-way leaves nothing of itself behind. Files already there with the size the
archive gives them are skipped, so a run that was killed finishes the job when run again.
Symbolic links inside the destination are kept as links (tar's, and zip's as Info-ZIP stores them on
unix), hard links become copies, and device files and FIFOs are ignored. An archive is refused, with
nothing of it extracted, when a member would land outside the destination: by name (an absolute
path, ``..``), through a link (of the archive, or already in the destination), or as a link that
leads outside it, however the archive's other links resolve (see :func:`_check_landing`).
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

from comcl.errors import DataError

log = logging.getLogger(__name__)

_PART = re.compile(r"\.(\d{3})$")
_LINK_MAX = 4096  # PATH_MAX: a zip "link" with more data is not a link
_UNSAFE_HINT = "do not unpack it: delete it and get the archive from the dataset's official source again"
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, NotImplementedError)


class _Member(NamedTuple):
    """One file of an archive, whatever the format: ``source`` is a symbolic link's target, or opens the member's data."""

    name: str
    size: int
    source: str | Callable[[], IO[bytes]]


def extract(
    archives: Sequence[str | Path],
    destination: str | Path,
    *,
    strip_components: int = 0,
    members: Callable[[str], bool] | None = None,
) -> list[Path]:
    """Unpack ``archives`` into ``destination``; return the paths of their files, extracted now or already there.

    ``strip_components`` drops that many leading parts of each member's path, as tar's option of the
    same name does (members with no more parts are left out); ``members`` then picks the members
    to extract by their stripped path, such as ``images/00000001_000.png``. Parts ``<name>.001``,
    ``<name>.002``, ... may be given all or only the first: either way they are read as one archive.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    found: dict[Path, None] = {}
    for parts in _group(list(map(Path, archives))):
        with _staging(destination) as staging:
            found.update(dict.fromkeys(_extract_one(parts, staging, destination, strip_components, members)))
    return list(found)


def _group(archives: list[Path]) -> list[list[Path]]:
    """Archives as lists of parts: one part for a plain archive, every ``.NNN`` part in order for a split one."""
    groups: dict[Path, list[Path]] = {}
    for archive in archives:
        if not archive.is_file():
            raise DataError("archive not found", path=archive, hint="download it first")
        match = _PART.search(archive.name)
        if match is None:
            _refuse_spanned_zip(archive)
            groups[archive] = [archive]
            continue
        first = archive.with_name(archive.name[: match.start()] + ".001")
        if first not in groups:
            groups[first] = _parts(first)
        if archive not in groups[first]:
            raise DataError(f"a part before it is missing (found {len(groups[first])} from {first.name})", path=archive)
    return list(groups.values())


def _parts(first: Path) -> list[Path]:
    if not first.is_file():
        raise DataError("the first part of this split archive is missing", path=first, hint="download every part")
    stem = first.name[:-4]
    parts = [first]
    while (part := first.with_name(f"{stem}.{len(parts) + 1:03d}")).is_file():
        parts.append(part)
    return parts


def _refuse_spanned_zip(archive: Path) -> None:
    if archive.suffix.lower() == ".zip" and archive.with_suffix(".z01").exists():
        raise DataError(
            "a spanned zip (.zip with .z01, .z02, ...), which cannot be read here",
            path=archive,
            hint=f"join the parts with `zip -s 0 {archive.name} --out joined.zip` and extract joined.zip instead",
        )


@contextmanager
def _staging(destination: Path) -> Iterator[Path]:
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging)


def _extract_one(
    parts: list[Path], staging: Path, destination: Path, strip: int, members: Callable[[str], bool] | None
) -> list[Path]:
    """Extract one archive into ``staging``, then move its files into ``destination``."""
    archive = parts[0]
    log.info("extracting %s into %s", archive if len(parts) == 1 else f"{archive} (+{len(parts) - 1} parts)", destination)
    source = archive if len(parts) == 1 else _join(parts, staging / "joined")
    files = staging / "files"
    try:
        if tarfile.is_tarfile(source):
            with tarfile.open(source) as tar:
                staged = _stage(_tar_members(tar, archive), archive, files, destination, strip, members)
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as zip_file:
                staged = _stage(_zip_members(zip_file, archive), archive, files, destination, strip, members)
        else:
            raise DataError("neither a tar nor a zip archive", path=archive, hint=_corrupt_hint(destination))
    except _CORRUPT as error:
        raise DataError(f"cannot read the archive ({error})", path=archive, hint=_corrupt_hint(destination)) from error
    for relative in [relative for relative, written in staged.items() if written]:
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(files / relative, destination / relative)
    return [destination / relative for relative in staged]


def _corrupt_hint(destination: Path) -> str:
    return f"if it was downloaded, delete it so that it is downloaded again; otherwise unpack it by hand into {destination}"


def _join(parts: list[Path], joined: Path) -> Path:
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
    return joined


def _tar_members(tar: tarfile.TarFile, archive: Path) -> Iterator[_Member]:
    sizes: dict[str, int] = {}
    for info in tar:
        if info.isfile():
            sizes[info.name] = info.size
            yield _Member(info.name, info.size, _tar_data(tar, info))
        elif info.issym():
            yield _Member(info.name, 0, info.linkname)
        elif info.islnk():
            if _unsafe(info.linkname) or info.linkname not in sizes:
                message = f"member {info.name!r} is a hard link to {info.linkname!r}, not a file before it"
                raise DataError(message, path=archive, hint=_UNSAFE_HINT)
            yield _Member(info.name, sizes[info.linkname], _tar_data(tar, info))


def _tar_data(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    """Opens the data of a file or a hard link to one (``extractfile`` answers None only for the other kinds)."""

    def open_data() -> IO[bytes]:
        data = tar.extractfile(info)
        assert data is not None, info.name
        return data

    return open_data


def _zip_data(zip_file: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: zip_file.open(info)


def _zip_members(zip_file: zipfile.ZipFile, archive: Path) -> Iterator[_Member]:
    """Files and symbolic links: a member whose unix mode (the high half of ``external_attr``) says link, its data the target."""
    for info in zip_file.infolist():
        if info.is_dir():
            continue
        if not stat.S_ISLNK(info.external_attr >> 16):
            yield _Member(info.filename, info.file_size, _zip_data(zip_file, info))
            continue
        with zip_file.open(info) as source:
            target = source.read(_LINK_MAX + 1)
        if len(target) > _LINK_MAX:
            message = f"member {info.filename!r} is a link with a target longer than {_LINK_MAX} bytes"
            raise DataError(message, path=archive, hint=_UNSAFE_HINT)
        yield _Member(info.filename, 0, os.fsdecode(target))


def _stage(
    entries: Iterator[_Member], archive: Path, files: Path, destination: Path, strip: int, members: Callable[[str], bool] | None
) -> dict[PurePosixPath, bool]:
    """Write the members not already in ``destination`` under ``files``; map each member's path to whether it was."""
    staged: dict[PurePosixPath, bool] = {}
    links: dict[PurePosixPath, str] = {}  # where each link of the archive lands -> its member's name
    for member in entries:
        if _unsafe(member.name):
            raise DataError(f"member {member.name!r} would be written outside the destination", path=archive, hint=_UNSAFE_HINT)
        relative = _strip(member.name, strip)
        if relative is None:
            continue
        _check_landing(member, relative, links, archive, destination)
        if isinstance(member.source, str):
            links[relative] = member.name
        if members is not None and not members(str(relative)):
            continue
        if _is_present(destination / relative, member):
            staged.setdefault(relative, False)
            continue
        path = files / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a member given twice: the later one wins, as with tar
        if isinstance(member.source, str):
            os.symlink(member.source, path)
        else:
            with member.source() as source, open(path, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        staged[relative] = True
    return staged


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


def _strip(name: str, strip: int) -> PurePosixPath | None:
    """The member's path without its first ``strip`` parts (``.`` counts as one, as in tar); ``None`` if nothing is left."""
    parts = [part for part in name.split("/") if part][strip:]
    kept = [part for part in parts if part != "."]
    return PurePosixPath(*kept) if kept else None


def _check_landing(
    member: _Member, relative: PurePosixPath, links: dict[PurePosixPath, str], archive: Path, destination: Path
) -> None:
    """Refuse ``member`` unless it lands inside the destination, whatever the archive's links resolve to.

    Checking names is not enough: after ``d/x -> ..``, a member ``d/x/z`` is one folder higher than its
    name says, and a chain of such links leads anywhere. So no member may be written through a link:
    neither one of the archive's (``links``, known by where they land, since those already in the
    destination are skipped rather than staged) nor one already in the destination. That makes every
    link's own folder a real one; and a link may climb (``..``) only at the start of its target, from
    that real folder, and not above the destination. Then no link leads outside, whichever links come
    before or after it. tarfile's ``data`` filter would not do: it resolves links as they are on disk
    when a member is written, so it sees neither the links skipped as already present nor those that
    come later and change where an earlier one leads, and it does not read zip. Every member is
    checked, picked by ``members`` or not: an archive that tries this is refused as a whole.
    """
    for parent in list(relative.parents)[:-1]:
        if parent in links:
            message = f"member {member.name!r} would be written through the link {links[parent]!r}"
            raise DataError(message, path=archive, hint=_UNSAFE_HINT)
        if (destination / parent).is_symlink():
            raise DataError(
                f"member {member.name!r} would be written through {destination / parent}, a symbolic link",
                path=archive,
                hint=f"replace the link {destination / parent} by a real folder "
                f"(a link may stand for {destination} itself, not for a folder in it)",
            )
    if isinstance(member.source, str):
        _check_link(member.name, relative, member.source, archive)


def _check_link(name: str, relative: PurePosixPath, target: str, archive: Path) -> None:
    """Refuse a link to an absolute path or above the destination, and one that climbs (``..``) after a folder name."""
    if not target or posixpath.isabs(target) or _escapes(relative, target):
        raise DataError(f"member {name!r} is a link to {target!r}, outside the destination", path=archive, hint=_UNSAFE_HINT)
    parts = PurePosixPath(target).parts
    climbs = next((index for index, part in enumerate(parts) if part != ".."), len(parts))
    if ".." in parts[climbs:]:
        raise DataError(
            f"member {name!r} is a link to {target!r}, which climbs (..) after a folder name, through links that lead anywhere",
            path=archive,
            hint=_UNSAFE_HINT,
        )


def _escapes(relative: PurePosixPath, link: str) -> bool:
    resolved = posixpath.normpath(posixpath.join(str(relative.parent), link))
    return resolved == ".." or resolved.startswith("../")


def _is_present(path: Path, member: _Member) -> bool:
    if isinstance(member.source, str):
        return path.is_symlink() and os.readlink(path) == member.source
    return path.is_file() and not path.is_symlink() and path.stat().st_size == member.size
