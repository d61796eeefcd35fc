"""HTTPS served directly by the real process, with a self-signed certificate made for the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.process import run_server_to_exit, running_server, send_sample
from tests.rawhttp import exchange, request_bytes
from tests.support import SAMPLE_BYTES, post, rows


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command (make test installs it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make a test certificate (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_https_is_served_with_the_configured_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = tmp_path / "tls.toml"
    config.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    trusting = ssl.create_default_context(cafile=str(cert))
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, "--config", str(config), tls=trusting) as server:
        assert server.url.startswith("https://")
        assert post(f"{server.url}/push", SAMPLE_BYTES, tls=trusting) == (200, b"{}")
        # The certificate is the one configured: a client that trusts only the system's roots refuses it.
        with pytest.raises(ssl.SSLCertVerificationError):
            exchange(server.url, (request_bytes("GET", "/healthz"),), tls=ssl.create_default_context())
        with pytest.raises(ConnectionError):  # plain HTTP on the TLS port gets no answer
            exchange(server.url.replace("https", "http"), (request_bytes("GET", "/healthz"),), timeout=5)
        # send-sample without --url posts over HTTPS to this configuration, trusting its certificate.
        own = tmp_path / "own.toml"
        own.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\nport = {server.port}\n')
        sent = send_sample(tmp_path, "--config", str(own), "--fresh-call-id", "--retries", "0")
        assert sent.returncode == 0, sent.stdout
        assert f"to https://127.0.0.1:{server.port}/push" in sent.stdout
        assert server.stop() == 0
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 2
    assert f"listening on https://127.0.0.1:{server.port}/push" in server.log()
    assert f"inspector on https://127.0.0.1:{server.port}/\n" in server.log()


@pytest.mark.parametrize("broken", ["missing", "key-mismatch"])
def test_unloadable_certificate_is_one_sentence_and_exit_2(
    tmp_path: Path, certificate: tuple[Path, Path], broken: str
) -> None:
    cert, key = certificate
    if broken == "missing":
        cert = tmp_path / "nope.pem"
    else:
        other = tmp_path / "other.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-out", str(other)], check=True, capture_output=True, timeout=30)  # fmt: skip
        key = other
    config = tmp_path / "tls.toml"
    config.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    result = run_server_to_exit(tmp_path, "--config", str(config), "--db", str(tmp_path / "db.sqlite3"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"airudder-receiver: cannot load tls_cert {cert} with tls_key {key}:")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
