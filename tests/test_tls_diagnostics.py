"""The edge says which side of the TLS handshake failed and why (gRPC itself says only
``UNAVAILABLE ... Socket closed``): no client certificate, unknown CA on either side,
a server certificate for another name, an expired certificate."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_grpc_server import TOKEN, _cfg

from benchmarks.bench_grpc import install_fakes
from cloud.server import ServerThread, ServerTLS
from edge.client import CloudClient, CloudError
from semcom import security
from semcom.security import diagnose_tls


@pytest.fixture
def fakes(monkeypatch):
    return install_fakes(monkeypatch, delay_s=0.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return security.make_dev_pki(root / "a"), security.make_dev_pki(root / "b")


def _expired_copy(pki: dict, which: str, out: Path) -> Path:
    """``which`` (server_cert / client_cert) re-issued by the same CA, expired yesterday."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_key = serialization.load_pem_private_key(Path(pki["ca_key"]).read_bytes(), None)
    ca = x509.load_pem_x509_certificate(Path(pki["ca"]).read_bytes())
    old = x509.load_pem_x509_certificate(Path(pki[which]).read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
    )
    for ext in old.extensions:
        b = b.add_extension(ext.value, ext.critical)
    out.write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return out


def test_server_side_causes(fakes, pki, tmp_path):
    a, b = pki
    tls = ServerTLS(str(a["server_cert"]), str(a["server_key"]))
    with ServerThread(_cfg(), token=TOKEN, tls=tls) as srv:
        assert diagnose_tls(srv.target, a["ca"]) is None  # a good handshake
        why = diagnose_tls(srv.target, b["ca"])
        assert "not signed by the CA the edge trusts" in why and str(b["ca"]) in why
        why = diagnose_tls(srv.target, a["ca"], server_name="cloud.example.org")
        assert "not issued for 'cloud.example.org'" in why and "--server-name" in why
    expired = _expired_copy(a, "server_cert", tmp_path / "expired.pem")
    with ServerThread(
        _cfg(), token=TOKEN, tls=ServerTLS(str(expired), str(a["server_key"]))
    ) as srv:
        assert "the cloud's certificate has expired" in diagnose_tls(srv.target, a["ca"])


def test_client_side_causes_under_mutual_tls(fakes, pki, tmp_path):
    a, b = pki
    mtls = ServerTLS(str(a["server_cert"]), str(a["server_key"]), str(a["ca"]))
    with ServerThread(_cfg(), token=TOKEN, tls=mtls) as srv:
        good = (a["ca"], a["client_cert"], a["client_key"])
        assert diagnose_tls(srv.target, *good) is None
        assert "requires a client certificate" in diagnose_tls(srv.target, a["ca"])
        why = diagnose_tls(srv.target, a["ca"], b["client_cert"], b["client_key"])
        assert "does not trust the CA" in why or "rejected the edge's client" in why
        expired = _expired_copy(a, "client_cert", tmp_path / "client-expired.pem")
        why = diagnose_tls(srv.target, a["ca"], expired, a["client_key"])
        assert "client certificate" in why and "expired on" in why


def test_the_edge_client_raises_the_cause_instead_of_retrying(fakes, pki):
    a, b = pki
    mtls = ServerTLS(str(a["server_cert"]), str(a["server_key"]), str(a["ca"]))
    with ServerThread(_cfg(), token=TOKEN, tls=mtls) as srv:
        client = CloudClient(srv.target, token=TOKEN, ca=str(a["ca"]))
        with pytest.raises(CloudError, match="requires a client certificate") as e:
            client.wait_until_serving(30)
        assert "TLS handshake with" in str(e.value)
        ok = CloudClient(
            srv.target,
            token=TOKEN,
            ca=str(a["ca"]),
            cert=str(a["client_cert"]),
            key=str(a["client_key"]),
        )
        assert ok.wait_until_serving(30) is not None


def test_a_cloud_that_is_down_is_not_a_tls_problem(pki):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert diagnose_tls(f"127.0.0.1:{port}", pki[0]["ca"]) is None
