"""Certificates and SuperNode keys for a TLS federation on loopback, generated with ``cryptography``.

The files are the ones a coordinating centre and its hospitals hold: a CA certificate, the
SuperLink's certificate and key for ``localhost``/``127.0.0.1`` signed by that CA, and per
SuperNode an EC P-384 key in OpenSSH form (the only form ``flower-supernode
--auth-supernode-private-key`` and ``flwr supernode register`` read in Flower 1.42).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ServerCerts", "write_node_key", "write_server_certs"]

_PEM = serialization.Encoding.PEM
_VALID = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ServerCerts:
    """Paths of the CA certificate and of the SuperLink's certificate and private key (PEM)."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # tolerate a little clock skew between processes
        .not_valid_after(now + _VALID)
    )


def write_server_certs(out: Path) -> ServerCerts:
    """Write a fresh CA and a SuperLink certificate for ``localhost`` and ``127.0.0.1`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        _builder("Vigil test CA", _name("Vigil test CA"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server_key = ec.generate_private_key(ec.SECP384R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server = (
        _builder("localhost", ca.subject, server_key.public_key())
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    certs = ServerCerts(out / "ca.crt", out / "superlink.crt", out / "superlink.key")
    certs.ca.write_bytes(ca.public_bytes(_PEM))
    certs.cert.write_bytes(server.public_bytes(_PEM))
    certs.key.write_bytes(
        server_key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certs


def write_node_key(out: Path, name: str) -> tuple[Path, Path]:
    """Write a SuperNode's P-384 key pair as ``name.key``/``name.pub`` (OpenSSH); return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = out / f"{name}.key", out / f"{name}.pub"
    private.write_bytes(key.private_bytes(_PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return private, public
