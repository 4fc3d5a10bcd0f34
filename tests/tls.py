"""HTTPS on 127.0.0.1 for the download tests: without a checksum, comcl downloads only over https.

The certificates are fixed, made once with openssl (a test CA, valid 2000-2100, and a certificate for
IP 127.0.0.1 it signed), so that the tests need no tool to make them; the key guards nothing but
these tests. urllib is told to trust the CA through ``SSL_CERT_FILE``, for one test at a time.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Served, _handler

CA = """\
-----BEGIN CERTIFICATE-----
MIIBZTCCAQugAwIBAgIBAjAKBggqhkjOPQQDAjAZMRcwFQYDVQQDDA5jb21jbCB0
ZXN0cyBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowGTEXMBUG
A1UEAwwOY29tY2wgdGVzdHMgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQJ
Sva9bm4llfTSw0W6CSzJ/6Chhprf8zxQt6q4kTGPExEx5yEoyHHmQ0XSSHVMtT66
QKFdyNrEjYYpa0K0i6Zto0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQE
AwIBBjAdBgNVHQ4EFgQUsTkpNB4SMB4rIKTIU1RKPvrIlc0wCgYIKoZIzj0EAwID
SAAwRQIgC8Dpgbzaga082Q4LJ6hpnledgXr7HkJyLUZ6ZLbR0lECIQDpQUPVGhiz
j7wD9+pruu6i7HwQ7jV2draJfIcDjnxqcQ==
-----END CERTIFICATE-----
"""
CERTIFICATE = """\
-----BEGIN CERTIFICATE-----
MIIBpjCCAUygAwIBAgIBATAKBggqhkjOPQQDAjAZMRcwFQYDVQQDDA5jb21jbCB0
ZXN0cyBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowFDESMBAG
A1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVhbmAJNJ
lKtizjW0ZLVSatkZ9S09/OzyhZCmz4By4KMgiIBB0kBPmqsGvSuxtlAgD7Pgb2uN
I5rnFmf3wkTmOaOBhzCBhDAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDAT
BgNVHSUEDDAKBggrBgEFBQcDATAPBgNVHREECDAGhwR/AAABMB0GA1UdDgQWBBSv
NDWS+qiSpGYOQ/JAtQauVDXZ5DAfBgNVHSMEGDAWgBSxOSk0HhIwHisgpMhTVEo+
+siVzTAKBggqhkjOPQQDAgNIADBFAiEAuzyQ2bkP4XNAJzA3UtGaUnhKCympolKG
ZNlelESdA1oCICbC47NXbLAZpKRAwRzbCDRTiB4QS7gjfVA2821z8BTs
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvOVbyh48xLpWqUou
qDojN5Pq2ORv2vJc6iAMRkwFMr2hRANCAARWFuYAk0mUq2LONbRktVJq2Rn1LT38
7PKFkKbPgHLgoyCIgEHSQE+aqwa9K7G2UCAPs+Bva40jmucWZ/fCROY5
-----END PRIVATE KEY-----
"""


@contextmanager
def https(
    handler: Callable[..., http.server.BaseHTTPRequestHandler], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Serve ``handler`` over https on 127.0.0.1 for the block, trusted by urllib (certificates in ``folder``); yield its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_text(CA)
    (folder / "server.pem").write_text(CERTIFICATE)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(folder / "ca.pem"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def https_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The ``http_server`` fixture's server over https: the same ``Served``, with an ``https://`` ``url``."""
    served = Served()
    with https(_handler(served), tmp_path_factory.mktemp("tls"), monkeypatch) as url:
        served.url = url
        yield served
