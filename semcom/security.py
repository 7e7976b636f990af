"""Security shared by the two daemons: TLS credentials, the bearer token, bind rules.

- **TLS**: the cloud serves with a certificate (``server_credentials``); with a client
  CA it also requires client certificates (mutual TLS). The edge trusts a CA file
  (``channel_credentials``) and may present its own certificate.
- **Token**: every call carries ``authorization: Bearer <token>``; the cloud's
  :class:`TokenAuthInterceptor` answers UNAUTHENTICATED otherwise (constant-time
  comparison). Tokens come from a file or the ``SEMCOM_TOKEN`` environment variable,
  never from the command line (it would show in ``ps``).
- **Binding**: plaintext is allowed only on loopback addresses (:func:`check_bind`).
- :func:`make_dev_pki` writes a throwaway CA, a server and a client certificate and a
  token (``semcom cloud gen-certs``; the tests make theirs the same way).

grpc and cryptography are imported inside the functions that need them.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from semcom.errors import SemcomError

log = logging.getLogger(__name__)

TOKEN_ENV = "SEMCOM_TOKEN"
MIN_TOKEN_CHARS = 16
AUTH_HEADER = "authorization"
HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


class SecurityError(SemcomError):
    """TLS files, tokens or addresses are missing or unsafe."""


# ------------------------------------------------------------------------------ tokens


def load_token(
    path: str | os.PathLike | None = None, *, env: str = TOKEN_ENV, required: bool = True
) -> str | None:
    """The bearer token from ``path`` (first line) or the environment variable ``env``."""
    token = None
    if path:
        p = Path(path).expanduser()
        try:
            text = p.read_text().strip()
            token = text.splitlines()[0].strip() if text else ""
        except OSError as exc:
            raise SecurityError(f"cannot read the token file {p}: {exc}") from None
        if not token:
            raise SecurityError(f"the token file {p} is empty")
    elif os.environ.get(env):
        token = os.environ[env].strip()
    if token is None:
        if required:
            raise SecurityError(
                f"no bearer token: give --token-file FILE or set {env} "
                "(`semcom cloud gen-certs --out DIR` writes one)"
            )
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise SecurityError(
            f"the bearer token is too short ({len(token)} characters; "
            f"use at least {MIN_TOKEN_CHARS}, e.g. `openssl rand -hex 32`)"
        )
    if any(c.isspace() for c in token) or not token.isprintable():
        raise SecurityError("the bearer token must be printable and contain no spaces")
    return token


def new_token() -> str:
    return secrets.token_urlsafe(32)


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def token_matches(metadata, token: str) -> bool:
    """Constant-time check of ``authorization: Bearer <token>`` in gRPC metadata."""
    want = f"Bearer {token}".encode()
    for key, value in metadata or ():
        if key.lower() != AUTH_HEADER:
            continue
        got = value if isinstance(value, bytes) else str(value).encode()
        if hmac.compare_digest(got, want):
            return True
    return False


class TokenAuthInterceptor:
    """grpc.aio server interceptor: UNAUTHENTICATED unless the call carries the token.

    ``exempt``: full method names allowed without a token (e.g. health checks for a
    load balancer's probe, with ``--open-health``). ``on_reject(method)`` counts rejects.
    """

    def __init__(self, token: str, *, exempt=(), on_reject: Callable[[str], None] | None = None):
        import grpc

        if not token:
            raise SecurityError("TokenAuthInterceptor needs a token")
        self._token = token
        self._exempt = frozenset(exempt)
        self._on_reject = on_reject

        async def deny(request_or_iterator, context):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token (metadata 'authorization: Bearer <token>')",
            )

        self._deny = {
            "unary_unary": grpc.unary_unary_rpc_method_handler(deny),
            "unary_stream": grpc.unary_stream_rpc_method_handler(deny),
            "stream_unary": grpc.stream_unary_rpc_method_handler(deny),
            "stream_stream": grpc.stream_stream_rpc_method_handler(deny),
        }

    async def intercept_service(self, continuation, details):
        if details.method in self._exempt or token_matches(
            details.invocation_metadata, self._token
        ):
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:  # unknown method: let grpc answer UNIMPLEMENTED
            return None
        if self._on_reject:
            self._on_reject(details.method)
        log.warning("rejected %s: missing or wrong bearer token", details.method)
        kind = (
            ("stream" if handler.request_streaming else "unary")
            + "_"
            + ("stream" if handler.response_streaming else "unary")
        )
        return self._deny[kind]


def make_interceptor(token: str, **kw):
    """A :class:`TokenAuthInterceptor` that is also a ``grpc.aio.ServerInterceptor``."""
    import grpc

    cls = type("AioTokenAuthInterceptor", (TokenAuthInterceptor, grpc.aio.ServerInterceptor), {})
    return cls(token, **kw)


# ------------------------------------------------------------------------------ TLS


def _read(path, what: str) -> bytes:
    p = Path(path).expanduser()
    try:
        return p.read_bytes()
    except OSError as exc:
        raise SecurityError(f"cannot read the {what} {p}: {exc}") from None


def server_credentials(cert_file, key_file, client_ca_file=None):
    """TLS server credentials; with ``client_ca_file``, client certificates are required."""
    import grpc

    if not cert_file or not key_file:
        raise SecurityError("TLS needs both --tls-cert and --tls-key")
    pair = (_read(key_file, "TLS key"), _read(cert_file, "TLS certificate"))
    ca = _read(client_ca_file, "client CA") if client_ca_file else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def channel_credentials(ca_file=None, cert_file=None, key_file=None):
    """TLS channel credentials: trust ``ca_file`` (system roots if None); present a client
    certificate when ``cert_file`` and ``key_file`` are given (mutual TLS)."""
    import grpc

    if bool(cert_file) != bool(key_file):
        raise SecurityError("a client certificate needs both --tls-cert and --tls-key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA certificate") if ca_file else None,
        private_key=_read(key_file, "TLS key") if key_file else None,
        certificate_chain=_read(cert_file, "TLS certificate") if cert_file else None,
    )


# ------------------------------------------------------------------------------ addresses


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[::1]:port"`` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SecurityError(f"expected HOST:PORT, got {address!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    p = int(port)
    if not 0 <= p <= 65535:
        raise SecurityError(f"port out of range in {address!r}")
    return host, p


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(address: str, *, tls: bool) -> None:
    """Plaintext only on loopback: a wildcard or public bind needs TLS."""
    host, _ = split_address(address)
    if not tls and not is_loopback(host):
        raise SecurityError(
            f"refusing to serve plaintext on {address}: give --tls-cert and "
            "--tls-key, or listen on a loopback address (127.0.0.1)"
        )


# ------------------------------------------------------------------------------ dev PKI


def make_dev_pki(
    out_dir,
    *,
    hosts=("localhost", "127.0.0.1", "::1"),
    days: int = 30,
    client: bool = True,
    token: bool = True,
) -> dict[str, Path]:
    """A throwaway CA, server certificate (for ``hosts``), client certificate and token.

    For development and tests only: the CA key is written beside the certificates.
    Returns the paths: ``ca``, ``ca_key``, ``server_cert``, ``server_key``,
    ``client_cert``, ``client_key``, ``token``.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(cn: str):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "semcom dev"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    def write_key(key, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("semcom dev CA"))
        .issuer_name(name("semcom dev CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    sans = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    paths: dict[str, Path] = {}
    pem = serialization.Encoding.PEM
    paths["ca"] = out / "ca.pem"
    paths["ca"].write_bytes(ca_cert.public_bytes(pem))
    paths["ca_key"] = write_key(ca_key, out / "ca.key")
    skey, scert = leaf(hosts[0] if hosts else "semcom-cloud", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    paths["server_cert"] = out / "server.pem"
    paths["server_cert"].write_bytes(scert.public_bytes(pem))
    paths["server_key"] = write_key(skey, out / "server.key")
    if client:
        ckey, ccert = leaf("semcom-edge", ExtendedKeyUsageOID.CLIENT_AUTH, [])
        paths["client_cert"] = out / "client.pem"
        paths["client_cert"].write_bytes(ccert.public_bytes(pem))
        paths["client_key"] = write_key(ckey, out / "client.key")
    if token:
        paths["token"] = out / "token"
        paths["token"].write_text(new_token() + "\n")
        paths["token"].chmod(0o600)
    return paths


# -- TLS diagnostics ---------------------------------------------------------------------
def _cert_expiry(path) -> str | None:
    """``"expired on <date>"`` if the PEM certificate at ``path`` is past its end date."""
    import datetime

    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except Exception:  # not readable here: the TLS stack will say so
        return None
    end = cert.not_valid_after_utc
    if end < datetime.datetime.now(datetime.UTC):
        return f"expired on {end:%Y-%m-%d %H:%M} UTC"
    return None


_ALERTS = (  # what the cloud's TLS alert says about the edge's client certificate
    (
        "CERTIFICATE_REQUIRED",
        "the cloud requires a client certificate (mutual TLS): give --cert and --key",
    ),
    (
        "UNKNOWN_CA",
        "the cloud does not trust the CA that signed the edge's client "
        "certificate (--cert): use a certificate from the CA the cloud was given "
        "(--client-ca)",
    ),
    ("CERTIFICATE_EXPIRED", "the cloud says the edge's client certificate (--cert) has expired"),
    ("BAD_CERTIFICATE", "the cloud rejected the edge's client certificate (--cert)"),
    (
        "HANDSHAKE_FAILURE",
        "the cloud refused the handshake (no common protocol or cipher, "
        "or a client certificate it requires)",
    ),
)


def diagnose_tls(
    target: str,
    ca_file=None,
    cert_file=None,
    key_file=None,
    server_name: str | None = None,
    *,
    timeout_s: float = 5.0,
) -> str | None:
    """Why a TLS connection from the edge to ``target`` fails, in words, or None when the
    handshake succeeds (or the cloud cannot be reached at all: that is not TLS).

    gRPC reports every handshake failure as ``UNAVAILABLE ... Socket closed``; this repeats
    the handshake with Python's ``ssl`` and the same files, and names the side that
    failed and the reason: the cloud's certificate not signed by ``--ca`` (unknown CA),
    issued for another name, expired; or the cloud refusing the edge's certificate
    (none given, unknown CA, expired).
    """
    import socket
    import ssl

    host, port = split_address(target)
    name = server_name or host
    if cert_file and (why := _cert_expiry(cert_file)):
        return f"the edge's client certificate {cert_file} {why}: make a new one"
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        ctx.set_alpn_protocols(["h2"])
    except (OSError, ssl.SSLError) as exc:
        return f"the edge's TLS files cannot be used: {exc}"
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return None  # down or unreachable: not a TLS problem
    try:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            s.settimeout(timeout_s)
            try:  # TLS 1.3: the cloud judges the client certificate after the handshake
                first = s.recv(1)  # a gRPC server speaks first (HTTP/2 SETTINGS)
            except TimeoutError:
                first = b"?"
            if not first:  # closed right after the handshake, without a word
                if not cert_file:
                    return dict(_ALERTS)["CERTIFICATE_REQUIRED"] + " (it closed the connection)"
                return (
                    "the cloud closed the connection after the handshake: it rejected the "
                    "edge's client certificate (--cert): not signed by a CA it trusts "
                    "(--client-ca), or expired"
                )
    except ssl.SSLCertVerificationError as exc:
        code, msg = exc.verify_code, str(exc.verify_message or exc)
        if code == 10 or "expired" in msg:
            return f"the cloud's certificate has expired ({msg}): the cloud needs a new certificate"
        if code == 62 or "mismatch" in msg.lower():
            return (
                f"the cloud's certificate is not issued for '{name}' ({msg}): connect by a "
                "name in its certificate, or give --server-name"
            )
        if code in (2, 18, 19, 20, 21):
            return (
                f"the cloud's certificate is not signed by the CA the edge trusts "
                f"({ca_file or 'the system CAs'}): unknown CA ({msg}); give --ca with the "
                "CA that signed it"
            )
        return f"the cloud's certificate failed verification: {msg}"
    except ssl.SSLError as exc:
        text = f"{exc.reason or ''} {exc}".upper()
        for key, what in _ALERTS:
            if key in text:
                return f"{what} ({exc.reason or exc})"
        if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER" in text:
            return "the cloud does not speak TLS on this port (plaintext server? use --insecure)"
        return f"TLS handshake failed: {exc}"
    except (ConnectionResetError, BrokenPipeError) as exc:
        return f"the cloud closed the connection during the handshake ({exc})"
    except OSError:
        return None
    return None
