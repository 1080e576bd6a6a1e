"""HTTPS for both endpoints: a local certificate authority and a server certificate in the data dir.

``{data dir}/tls/``: ``ca.pem`` (the local CA's certificate: what clients trust, e.g.
``NODE_EXTRA_CA_CERTS``), ``ca-key.pem``, ``server.pem`` + ``server-key.pem`` (the endpoints'
certificate for 127.0.0.1, ::1, localhost and the configured host names, signed by the CA), and
``ca-bundle.pem`` (the system's trusted CAs plus the local CA, for ``REQUESTS_CA_BUNDLE`` /
``SSL_CERT_FILE``, which replace the trust store rather than add to it). The CA is made once; the
server certificate is made again when the host names change or it nears its end. Keys are 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
_RENEW_BEFORE = dt.timedelta(days=30)
_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # the server certificate (PEM; with the CA after it when openbatch made it)
    key: Path
    ca: Path | None  # the CA clients should trust (None: a certificate the user brought)
    bundle: Path | None  # system CAs + the local CA


def tls_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "tls"


def ensure_certificate(data_dir: Path, names: tuple[str, ...] = ()) -> TlsFiles:
    """The local CA and a server certificate covering :data:`DEFAULT_NAMES` and ``names``."""
    root = tls_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # tasks of any account read ca.pem and ca-bundle.pem (the keys are 0600)
    ca_cert, ca_key = _ca(root)
    wanted = sorted({*DEFAULT_NAMES, *(n.strip("[]") for n in names if n and n not in ("0.0.0.0", "::"))})
    cert_path, key_path = root / "server.pem", root / "server-key.pem"
    if not _current(cert_path, key_path, wanted):
        _server_certificate(ca_cert, ca_key, wanted, cert_path, key_path)
    bundle = root / "ca-bundle.pem"
    _write(bundle, _system_cas(bundle) + (root / "ca.pem").read_bytes(), 0o644)
    return TlsFiles(cert_path, key_path, root / "ca.pem", bundle)


def existing(data_dir: Path) -> TlsFiles | None:
    """The files a server of this data dir made, if it did (for ``openbatch env``)."""
    root = tls_dir(data_dir)
    if not (root / "ca.pem").exists():
        return None
    return TlsFiles(root / "server.pem", root / "server-key.pem", root / "ca.pem", root / "ca-bundle.pem")


def check_pair(cert: Path, key: Path) -> None:
    """Refuse a --cert/--key pair that cannot serve (unreadable, not PEM, not matching) before binding."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _system_cas(ours: Path) -> bytes:
    """The CAs this machine trusts: $SSL_CERT_FILE's when set (and not our own bundle), else certifi's."""
    configured = os.environ.get("SSL_CERT_FILE", "")
    if configured and os.path.isfile(configured) and Path(configured).resolve() != ours.resolve():
        return Path(configured).read_bytes().rstrip(b"\n") + b"\n"
    try:
        import certifi  # installed with requests (azure-core's transport); else the system's bundle

        return Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n"
    except ImportError:
        for candidate in _SYSTEM_BUNDLES:
            if os.path.exists(candidate):
                return Path(candidate).read_bytes().rstrip(b"\n") + b"\n"
    return b""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca(root: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = root / "ca.pem", root / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "openbatch"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"openbatch local CA {os.uname().nodename}"[:64])])
    start = _now() - dt.timedelta(hours=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _current(cert_path: Path, key_path: Path, names: list[str]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return set(have) == set(_san(names)) and cert.not_valid_after_utc - _RENEW_BEFORE > _now()


def _server_certificate(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str],
                        cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now() - dt.timedelta(hours=1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=397))
            .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM),
           0o644)
