"""A private CA and the webhook's serving certificate, for clusters without cert-manager.

The API server calls the webhook at ``https://<service>.<namespace>.svc`` and verifies the
certificate against the ``caBundle`` of the webhook configuration, so the serving certificate
carries every name the Service answers to. Keys are ECDSA P-256 (fast handshakes, small
certificates). An existing CA is reused when a serving certificate is renewed, so the
``caBundle`` stays valid across rotations; the webhook picks the new pair up without a restart.
Private keys are written with mode 0600, never over an existing file unless asked.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dutyguard.errors import ConfigError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"


@dataclass(frozen=True, slots=True)
class CertFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    names: tuple[str, ...]
    new_ca: bool


def service_names(service: str, namespace: str) -> tuple[str, ...]:
    """Every DNS name a client inside the cluster may use for the Service."""
    return (
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        f"{service}.{namespace}",
        service,
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # readers (the running webhook) never see a half-written file


def make_certs(
    out: Path,
    *,
    service: str = "dutyguard-admission",
    namespace: str = "dutyguard-system",
    extra_names: tuple[str, ...] = (),
    days: int = 365,
    ca_days: int = 3650,
    now: datetime | None = None,
) -> CertFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1 or ca_days < days:
        raise ConfigError("--days must be at least 1 and not longer than the CA's validity")
    out.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(UTC)
    ca_cert_path, ca_key_path = out / CA_CERT, out / CA_KEY
    new_ca = not ca_cert_path.exists()
    if new_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"dutyguard admission CA ({namespace})")]
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=ca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(
            ca_key_path,
            ca_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            private=True,
        )
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    else:
        try:
            ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
            loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        except (OSError, ValueError) as e:
            raise ConfigError(f"existing CA in {out} cannot be used: {e}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{ca_key_path} is not an EC private key")
        ca_key = loaded

    names = (*service_names(service, namespace), *extra_names)
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a webhook reloading between the two writes sees a mismatched pair, refuses it
    # and keeps serving the old one until the certificate lands.
    _write(
        out / TLS_KEY,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private=True,
    )
    _write(out / TLS_CERT, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return CertFiles(ca_cert_path, ca_key_path, out / TLS_CERT, out / TLS_KEY, tuple(names), new_ca)
