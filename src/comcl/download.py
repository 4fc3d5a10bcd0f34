"""Large public files over HTTP: resumed after an interruption, tried on mirrors, and verified before use.

A dataset archive of several GB fails half-way often enough that starting again from zero is not an
option, so bytes go to ``<target>.part`` and a later attempt (in the same run or the next one) asks
the same URL for the rest with a ``Range`` request; ``<target>.part.url`` says which URL that is, as
a mirror's bytes need not be the same (another URL starts from zero). The final name only ever holds
a complete file that passed every check there is for it: published checksums (``md5``/``sha256``)
or, for files without any (NIH ChestX-ray14), the SHA-256 in a manifest, recorded by the caller
with :func:`record_checksum` once the file proved good (an archive: once it extracted), so that
every later download, on any machine, must give the same bytes. Without either, a file is only
fetched over https.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from comcl.errors import DataError
from comcl.io import write_json

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")
_NAMES = {"md5": "MD5", "sha256": "SHA-256"}
_TRANSIENT_HTTP = {408, 429}
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class _Interrupted(Exception):
    """A transfer that ended early or gave unusable bytes: worth another attempt."""


class _Refused(Exception):
    """A URL whose answer must not be used whatever the attempt: the next URL is tried."""


def sha256sum(path: str | Path) -> str:
    return _digests(path, ["sha256"])["sha256"]


def md5sum(path: str | Path) -> str:
    return _digests(path, ["md5"])["md5"]


def _digests(path: str | Path, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of a file in one streamed pass: dataset archives do not fit in memory, and reading them twice is slow."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def download(
    urls: Sequence[str],
    target: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    manifest: str | Path | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch ``target`` from the first of ``urls`` that gives it (later ones are mirrors) and return its path.

    A target that is already there is verified and used without network access. Each URL gets
    ``retries`` more attempts after the first for transient failures (connection errors, timeouts,
    5xx, a short body), waiting ``backoff * 2**attempt`` seconds (``sleep`` is there for tests);
    404/410 and other client errors move on to the next URL at once. A partial file is resumed
    only from the URL it came from. ``sha256`` may be the start of the digest only, as torchvision's
    file names carry it (``resnet50-0676ba61.pth``). ``manifest`` holds the SHA-256 and size the
    file must have, if it has an entry for it; the caller records one with :func:`record_checksum`.
    With no checksum at all (neither ``md5``, ``sha256`` nor an entry), URLs that are not https, and
    redirects away from https, are refused: nothing could tell a tampered file.
    """
    if not urls:
        raise ValueError("download needs at least one URL")
    target = Path(target)
    expected = {name: value.lower() for name, value in (("md5", md5), ("sha256", sha256)) if value}
    manifest = None if manifest is None else Path(manifest)
    if target.exists():
        _check(target, target, expected, manifest, hint=f"delete {target} and run again to download it again")
        return target
    https_only = not expected and _entry(manifest, target) is None
    if https_only:
        _refuse_plain(urls, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    failures: list[str] = []
    for url in urls:
        try:
            log.info("downloading %s to %s", url, target)
            _fetch(
                url,
                part,
                https_only=https_only,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                chunk=chunk,
                progress=progress,
                sleep=sleep,
            )
            break
        except (_Interrupted, _Refused, *_TRANSIENT) as error:
            failures.append(f"{url}: {_describe(error)}")
    else:
        raise DataError(
            "cannot download it from any of these URLs:\n    " + "\n    ".join(failures),
            path=target,
            hint=f"check the network connection, or download the file by hand to {target} and run again",
        )
    try:
        _check(part, target, expected, manifest, hint="it was deleted: run again to download it again")
    except DataError:
        _discard(part)
        raise
    os.replace(part, target)
    _origin(part).unlink(missing_ok=True)
    return target


def _refuse_plain(urls: Sequence[str], target: Path) -> None:
    """Refuse a file without any checksum from URLs that are not https: nothing would tell bytes changed on the way."""
    plain = [url for url in urls if urlparse(url).scheme != "https"]
    if plain:
        raise DataError(
            "no checksum to check it against, so it is only downloaded over https, not from " + ", ".join(plain),
            path=target,
            hint=f"use the file's https:// address, give its published sha256 or md5, or download it by hand to {target}",
        )


def _origin(part: Path) -> Path:
    """The file that holds the URL ``part``'s bytes came from."""
    return part.with_name(part.name + ".url")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _origin(part).unlink(missing_ok=True)


def _resumable(part: Path, url: str) -> int:
    """How many bytes of ``part`` to keep when fetching ``url``: none unless they came from ``url`` itself."""
    origin = _origin(part)
    if not part.exists() or not origin.exists() or origin.read_text() != url:
        return 0
    return part.stat().st_size


def _fetch(
    url: str,
    part: Path,
    *,
    https_only: bool,
    retries: int,
    backoff: float,
    timeout: float,
    chunk: int,
    progress: bool,
    sleep: Callable[[float], None],
) -> None:
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, https_only=https_only, timeout=timeout, chunk=chunk, progress=progress)
            return
        except urllib.error.HTTPError as error:
            if (error.code < 500 and error.code not in _TRANSIENT_HTTP) or attempt == retries:
                raise
            reason: BaseException = error
        except (_Interrupted, *_TRANSIENT) as error:
            if attempt == retries:
                raise
            reason = error
        wait = backoff * 2**attempt
        log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, _describe(reason), wait, attempt + 2, retries + 1)
        sleep(wait)


def _transfer(url: str, part: Path, *, https_only: bool, timeout: float, chunk: int, progress: bool) -> None:
    """One request: append to ``part`` from where it ends if it came from ``url``, or rewrite it with the whole file.

    ``part``'s origin is written after the rewrite starts (truncating it), so that a crash in between
    leaves an empty file, never one URL's bytes under another's name.
    """
    offset = _resumable(part, url)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        _, total = _content_range(error.headers.get("Content-Range"))
        if total is not None and total != offset:
            _discard(part)
            raise _Interrupted(f"the partial file has {offset} bytes but the file has {total}; starting again") from error
        return  # nothing left to fetch: the checksums decide whether the .part is the file
    with response:
        if https_only and urlparse(response.geturl()).scheme != "https":
            raise _Refused(f"redirected to {response.geturl()}, not https, and there is no checksum to check it against")
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                _discard(part)
                raise _Interrupted(f"asked for bytes from {offset}, got them from {start}; starting again")
        else:
            length = response.headers.get("Content-Length")
            start, total = 0, int(length) if length else None
        with open(part, "ab" if start else "wb") as out, _bar(part, start, total, progress) as bar:
            if not start:
                _origin(part).write_text(url)
            while data := response.read(chunk):
                out.write(data)
                bar.update(len(data))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"the connection ended after {size} of {total} bytes")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """Start and total size from a ``Content-Range`` header; ``None`` for what it does not say."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _bar(part: Path, start: int, total: int | None, progress: bool) -> tqdm:
    name = part.name.removesuffix(".part")
    disable = None if progress else True
    return tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=disable)


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _check(path: Path, target: Path, expected: dict[str, str], manifest: Path | None, *, hint: str) -> None:
    """Compare ``path`` (the target or its .part) with the expected checksums and ``target``'s manifest entry, if any."""
    what = "the file" if path == target else "the download"
    entry = _entry(manifest, target)
    size = path.stat().st_size
    checks = [(algorithm, value, "the expected") for algorithm, value in expected.items()]
    if entry is not None:
        hint += f"; if the file really changed upstream, remove its entry from {manifest}"
        if size != entry["size"]:
            raise DataError(f"{what} has {size} bytes, not the {entry['size']} recorded in {manifest}", path=target, hint=hint)
        checks.append(("sha256", entry["sha256"], f"the one recorded in {manifest},"))
    got = _digests(path, {algorithm for algorithm, _, _ in checks}) if checks else {}
    for algorithm, value, source in checks:
        if not got[algorithm].startswith(value):
            shown = value if len(value) == len(got[algorithm]) else f"{value}..."
            raise DataError(f"{what}'s {_NAMES[algorithm]} is {got[algorithm]}, not {source} {shown}", path=target, hint=hint)


def record_checksum(manifest: str | Path, path: str | Path) -> None:
    """Record ``path``'s SHA-256 and size in ``manifest``, for every later download of a file of its name to match.

    Call it once the file proved good (an archive: extracted completely), not right after the
    download: what is recorded is the truth from then on, so a broken file recorded would get the
    right one refused. A file that has an entry already keeps it (:func:`download` checked it).
    """
    manifest, path = Path(manifest), Path(path)
    if _entry(manifest, path) is None:
        log.info("recording the SHA-256 of %s in %s", path.name, manifest)
        _record(manifest, path.name, {"sha256": sha256sum(path), "size": path.stat().st_size})


def _entry(manifest: Path | None, target: Path) -> dict | None:
    return None if manifest is None else _read_manifest(manifest).get(target.name)


def _record(manifest: Path, name: str, entry: dict[str, str | int]) -> None:
    """Merge one entry under a lock: parallel jobs downloading different files record into the same manifest.

    The lock is a hidden file beside the manifest (``flock`` on the manifest itself would lock a file
    that the atomic write replaces); it is left in place, as removing it would race with other jobs.
    """
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest.with_name(f".{manifest.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read_manifest(manifest)
        entries[name] = entry
        write_json(manifest, dict(sorted(entries.items())))


def _read_manifest(manifest: Path) -> dict[str, dict]:
    if not manifest.exists():
        return {}
    hint = "fix the manifest, or delete it to record every file's SHA-256 again"
    try:
        entries = json.loads(manifest.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON ({error.msg})", path=manifest, line=error.lineno, hint=hint) from error
    if not isinstance(entries, dict) or not all(isinstance(e, dict) and {"sha256", "size"} <= e.keys() for e in entries.values()):
        raise DataError('expected {"<file name>": {"sha256": "...", "size": <bytes>}, ...}', path=manifest, hint=hint)
    return entries
