"""The web page's HTTPS certificate: a self-signed certificate made once and kept.

Phones accept it once (a LAN address has no public name a CA could vouch for); keeping it
means they are asked only once, and its fingerprint, printed at start, lets the user check
that the page they accepted is this receiver's.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airmic.common.config import write_private
from airmic.common.fingerprint import fingerprint

log = logging.getLogger(__name__)

VALID_DAYS = 3650


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the certificate, as browsers show it (AB:CD:...)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def load_certificate(folder: Path, addresses: list[str]) -> Certificate:
    """The certificate in `folder`, made now if missing or if it does not name one of
    `addresses` (the receiver moved to another network)."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert = _read(cert_path, key_path)
    if cert is None or not set(addresses) <= _names(cert):
        cert = _create(cert_path, key_path, addresses)
    der = cert.public_bytes(serialization.Encoding.DER)
    return Certificate(cert_path, key_path, fingerprint(der))


def _read(cert_path: Path, key_path: Path) -> x509.Certificate | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    expires = cert.not_valid_after_utc - datetime.timedelta(days=30)
    return cert if expires > datetime.datetime.now(datetime.UTC) else None


def _names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return ips | set(san.get_values_for_type(x509.DNSName))


def _create(cert_path: Path, key_path: Path, addresses: list[str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for address in dict.fromkeys([*addresses, "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airmic receiver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made a new certificate for the web page in %s", cert_path.parent)
    return cert
