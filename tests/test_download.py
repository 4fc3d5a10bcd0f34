"""Downloads from a local HTTP(S) server that can fail on demand: resume, retries, mirrors, checksums and the manifest."""

from __future__ import annotations

import hashlib
import http.server
import json
from pathlib import Path

import pytest

from comcl.download import download, md5sum, record_checksum, sha256sum
from comcl.errors import DataError
from tests.conftest import Served
from tests.tls import https

DATA = bytes(range(256)) * 1000  # 256 kB: several chunks of the 64 kB the tests read at a time
OTHER = DATA[::-1]  # what a mirror serves that is not the same file
SHA256 = hashlib.sha256(DATA).hexdigest()
CHUNK = 1 << 16


@pytest.fixture
def server(http_server: Served) -> Served:
    http_server.files["/data.bin"] = DATA
    return http_server


@pytest.fixture
def waits() -> list[float]:
    return []


def fetch(server: Served, tmp_path, waits: list[float], *paths: str, **options):
    return download(
        [server.url + path for path in paths], tmp_path / "data.bin", chunk=CHUNK, progress=False, sleep=waits.append, **options
    )


def test_a_download_completes_and_is_verified(server, tmp_path, waits):
    md5, sha256 = hashlib.md5(DATA).hexdigest(), hashlib.sha256(DATA).hexdigest()
    path = fetch(server, tmp_path, waits, "/data.bin", md5=md5.upper(), sha256=sha256)
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == DATA
    assert (md5sum(path), sha256sum(path)) == (md5, sha256)
    assert list(tmp_path.iterdir()) == [path]
    assert server.requests == [("/data.bin", None)]
    assert waits == []


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path, waits, caplog):
    server.cut_after["/data.bin"] = 100_000
    path = fetch(server, tmp_path, waits, "/data.bin", sha256=SHA256, backoff=0.5)
    assert path.read_bytes() == DATA
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=100000-")]
    assert waits == [0.5]
    assert "ended after 100000 of 256000 bytes; retrying in 0.5 s" in caplog.text


def partial(tmp_path: Path, data: bytes, url: str | None) -> None:
    """The partial file that an earlier run left, with the URL it came from (``None``: not recorded)."""
    (tmp_path / "data.bin.part").write_bytes(data)
    if url is not None:
        (tmp_path / "data.bin.part.url").write_text(url)


def test_a_partial_file_from_an_earlier_run_is_resumed_or_found_complete(server, tmp_path, waits):
    server.cut_after["/data.bin"] = 1000
    with pytest.raises(DataError, match="the connection ended after 1000"):
        fetch(server, tmp_path, waits, "/data.bin", sha256=SHA256, retries=0)  # one day
    assert fetch(server, tmp_path, waits, "/data.bin", sha256=SHA256).read_bytes() == DATA  # the next
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=1000-")]
    assert list(tmp_path.iterdir()) == [tmp_path / "data.bin"]

    (tmp_path / "data.bin").unlink()
    partial(tmp_path, DATA, f"{server.url}/data.bin")  # complete, but the run was killed before it took its name
    assert fetch(server, tmp_path, waits, "/data.bin", md5=hashlib.md5(DATA).hexdigest()).read_bytes() == DATA
    assert server.requests[-1] == ("/data.bin", f"bytes={len(DATA)}-")  # answered 416: nothing left to fetch


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path, waits):
    server.ignore_range.add("/data.bin")
    partial(tmp_path, b"stale bytes from another version", f"{server.url}/data.bin")
    assert fetch(server, tmp_path, waits, "/data.bin", sha256=SHA256).read_bytes() == DATA
    assert server.requests == [("/data.bin", "bytes=32-")]


@pytest.mark.parametrize("checked", [True, False], ids=["sha256", "https without checksum"])
def test_a_mirror_never_resumes_another_urls_partial_file(request, tmp_path, waits, checked):
    server = request.getfixturevalue("http_server" if checked else "https_server")
    server.files["/first/data.bin"], server.files["/second/data.bin"] = DATA, OTHER
    server.cut_after["/first/data.bin"] = 100_000
    options = {"sha256": hashlib.sha256(OTHER).hexdigest()} if checked else {}
    manifest = tmp_path / "checksums.json"
    path = fetch(server, tmp_path, waits, "/first/data.bin", "/second/data.bin", retries=0, manifest=manifest, **options)
    assert path.read_bytes() == OTHER  # the second file from byte 0, not DATA[:100_000] + OTHER[100_000:]
    assert server.requests == [("/first/data.bin", None), ("/second/data.bin", None)]
    assert list(tmp_path.iterdir()) == [path]  # and no manifest: the caller records the file once it proved good


def test_a_partial_file_waits_for_its_own_url(server, tmp_path, waits):
    server.files["/mirror/data.bin"] = DATA
    partial(tmp_path, DATA[:1000], f"{server.url}/data.bin")
    assert fetch(server, tmp_path, waits, "/gone/data.bin", "/data.bin", sha256=SHA256).read_bytes() == DATA
    assert server.requests == [("/gone/data.bin", None), ("/data.bin", "bytes=1000-")]  # a 404 elsewhere keeps it

    (tmp_path / "data.bin").unlink()
    partial(tmp_path, DATA[:1000], None)  # from a version that did not record where it came from
    assert fetch(server, tmp_path, waits, "/mirror/data.bin", sha256=SHA256).read_bytes() == DATA
    assert server.requests[-1] == ("/mirror/data.bin", None)


def test_a_checksum_mismatch_is_refused_and_nothing_is_kept(server, tmp_path, waits):
    with pytest.raises(DataError, match=r"the download's MD5 is [0-9a-f]{32}, not the expected 0{32}") as error:
        fetch(server, tmp_path, waits, "/data.bin", md5="0" * 32)
    assert "What to do: it was deleted: run again" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_falls_back_to_the_mirror(server, tmp_path, waits):
    server.files["/mirror/data.bin"] = DATA
    assert fetch(server, tmp_path, waits, "/gone/data.bin", "/mirror/data.bin", sha256=SHA256).read_bytes() == DATA
    assert server.requests == [("/gone/data.bin", None), ("/mirror/data.bin", None)]
    assert waits == []  # a 404 is not worth a retry


def test_a_server_error_is_retried_after_a_wait(server, tmp_path, waits, caplog):
    server.fail_once.add("/data.bin")
    assert fetch(server, tmp_path, waits, "/data.bin", sha256=SHA256).read_bytes() == DATA
    assert len(server.requests) == 2
    assert waits == [2.0]
    assert "HTTP 500 Internal Server Error; retrying in 2.0 s (attempt 2 of 6)" in caplog.text


def test_when_every_url_fails_the_error_lists_them_and_keeps_the_partial_file(server, tmp_path, waits):
    server.cut_after["/data.bin"] = 1000
    with pytest.raises(DataError) as error:
        fetch(server, tmp_path, waits, "/nowhere.bin", "/data.bin", sha256=SHA256, retries=0)
    message = str(error.value)
    assert f"{server.url}/nowhere.bin: HTTP 404" in message
    assert f"{server.url}/data.bin: the connection ended after 1000 of {len(DATA)} bytes" in message
    assert f"download the file by hand to {tmp_path / 'data.bin'}" in message
    assert (tmp_path / "data.bin.part").stat().st_size == 1000
    assert (tmp_path / "data.bin.part.url").read_text() == f"{server.url}/data.bin"


def test_the_manifest_records_a_checksum_when_told_then_refuses_a_changed_file(https_server, http_server, tmp_path, waits):
    https_server.files["/data.bin"] = http_server.files["/data.bin"] = DATA
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"other.bin": {"sha256": "ab", "size": 1}}))
    path = fetch(https_server, tmp_path / "first", waits, "/data.bin", manifest=manifest)
    assert json.loads(manifest.read_text()) == {"other.bin": {"sha256": "ab", "size": 1}}  # the caller decides when
    record_checksum(manifest, path)
    entries = json.loads(manifest.read_text())
    assert entries == {"data.bin": {"sha256": SHA256, "size": len(DATA)}, "other.bin": {"sha256": "ab", "size": 1}}

    http_server.files["/data.bin"] = OTHER  # plain http will do now: the entry is a checksum
    with pytest.raises(DataError, match="SHA-256 .* not the one recorded in .*manifest.json") as error:
        fetch(http_server, tmp_path / "second", waits, "/data.bin", manifest=manifest)
    assert "remove its entry from" in str(error.value)
    assert list((tmp_path / "second").iterdir()) == []
    record_checksum(manifest, tmp_path / "first/data.bin")
    assert json.loads(manifest.read_text()) == entries


def test_without_a_checksum_plain_http_is_refused_before_any_request(server, tmp_path, waits):
    with pytest.raises(DataError, match=f"only downloaded over https, not from {server.url}/data.bin") as error:
        fetch(server, tmp_path, waits, "/data.bin", manifest=tmp_path / "manifest.json")
    assert "What to do: use the file's https:// address, give its published sha256 or md5" in str(error.value)
    assert server.requests == [] and list(tmp_path.iterdir()) == []


def test_without_a_checksum_a_redirect_away_from_https_is_refused(server, tmp_path, waits, monkeypatch):
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"{server.url}/data.bin")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with https(Redirect, tmp_path / "tls", monkeypatch) as url, pytest.raises(DataError) as error:
        download([f"{url}/data.bin"], tmp_path / "out/data.bin", progress=False, sleep=waits.append)
    assert f"{url}/data.bin: redirected to {server.url}/data.bin, not https" in str(error.value)
    assert list((tmp_path / "out").iterdir()) == [] and waits == []  # not retried


def test_an_existing_target_is_verified_without_any_request(server, tmp_path, waits):
    (tmp_path / "data.bin").write_bytes(DATA)
    assert fetch(server, tmp_path, waits, "/data.bin", sha256=SHA256) == tmp_path / "data.bin"
    with pytest.raises(DataError, match="the file's SHA-256 is .* not the expected") as error:
        fetch(server, tmp_path, waits, "/data.bin", sha256="f" * 64)
    assert f"delete {tmp_path / 'data.bin'} and run again" in str(error.value)
    assert (tmp_path / "data.bin").read_bytes() == DATA  # a complete file of the user's is not deleted
    assert server.requests == []
