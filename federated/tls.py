"""TLS for live rounds beyond loopback: a small CA, the coordinator's certificate, device credentials.

``fedkb serve --init-tls`` makes, with ``cryptography``:

* a CA (``<home>/server/tls/ca.pem`` and its key, owner-only), valid ten years;
* the coordinator's certificate, for ``localhost``, ``127.0.0.1`` and the hosts given with
  ``--tls-host``;
* one client certificate per enrolled device (its common name is the device id), written to
  ``devices/<id>/tls/`` with the CA certificate: the device's credential. Devices enrolled later
  get theirs from ``fedkb population seed`` when a CA exists.

The coordinator then serves mutual TLS (gRPC's ``ssl_server_credentials`` with client
authentication required) and accepts a message only if its ``device_id`` is the common name of
the certificate the connection presented, so a device cannot speak for another. Files the user
gives (``--tls-cert``, ``--tls-key``, ``--tls-ca``) replace the generated ones. Keys are ECDSA P-256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.atomic import atomic_write
from common.errors import FedkbError
from common.layout import DeviceLayout

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
DEVICE_CERT, DEVICE_KEY = "device.pem", "device.key"  # in devices/<id>/tls/, with ca.pem
VALID_DAYS = 3650
# Each side checks the other's certificate against its own clock. Certificates are valid from this long
# before they are made, so a device whose clock is hours (up to two days) behind the coordinator's still
# accepts the coordinator's certificate, and the coordinator a device's issued just now.
CLOCK_SKEW_MARGIN = dt.timedelta(days=2)


class TLSError(FedkbError):
    """TLS files are missing or do not fit together; the text says which and what to run."""


@dataclass(frozen=True)
class ServerTLS:
    cert: bytes
    key: bytes
    ca: bytes

    @classmethod
    def load(cls, cert: Path, key: Path, ca: Path) -> ServerTLS:
        for p in (cert, key, ca):
            if not Path(p).is_file():
                raise TLSError(f"{p}: missing; run `fedkb serve --init-tls` or pass --tls-cert/--tls-key/--tls-ca")
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), Path(ca).read_bytes())

    @classmethod
    def from_dir(cls, tls_dir: Path) -> ServerTLS:
        return cls.load(tls_dir / SERVER_CERT, tls_dir / SERVER_KEY, tls_dir / CA_CERT)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_key(path: Path, key) -> None:
    atomic_write(path, _key_pem(key))
    os.chmod(path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedkb"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, issuer_key,
             days: int = VALID_DAYS) -> x509.CertificateBuilder:
    """A certificate valid from ``CLOCK_SKEW_MARGIN`` ago, with the key identifiers RFC 5280 asks for."""
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - CLOCK_SKEW_MARGIN)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False))


def init_ca(tls_dir: Path, hosts: list[str] = ()) -> Path:
    """Makes the CA and the coordinator's certificate in ``tls_dir`` (refuses to overwrite a CA)."""
    tls_dir = Path(tls_dir)
    if (tls_dir / CA_KEY).exists():
        raise TLSError(f"{tls_dir / CA_KEY} exists; a new CA would orphan every device credential. Remove "
                       f"{tls_dir} first to start over")
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fedkb coordinator CA")
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_key(tls_dir / CA_KEY, ca_key)
    atomic_write(tls_dir / CA_CERT, ca.public_bytes(serialization.Encoding.PEM))
    names: list[x509.GeneralName] = []
    for host in ["localhost", "127.0.0.1", *hosts]:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(hosts[0] if hosts else "localhost"), ca_name, server_key.public_key(),
                     ca_key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(tls_dir / SERVER_KEY, server_key)
    atomic_write(tls_dir / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return tls_dir


def issue_device(tls_dir: Path, device_dir: Path) -> Path:
    """Enrols one device: a client certificate whose common name is its id, beside the CA certificate."""
    tls_dir, device_dir = Path(tls_dir), Path(device_dir)
    try:
        ca_key = serialization.load_pem_private_key((tls_dir / CA_KEY).read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate((tls_dir / CA_CERT).read_bytes())
    except FileNotFoundError as exc:
        raise TLSError(f"{exc.filename}: missing; run `fedkb serve --init-tls` first") from None
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(device_dir.name), ca.subject, key.public_key(), ca_key.public_key())
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = DeviceLayout(device_dir).tls
    out.mkdir(exist_ok=True)
    _write_key(out / DEVICE_KEY, key)
    atomic_write(out / DEVICE_CERT, cert.public_bytes(serialization.Encoding.PEM))
    atomic_write(out / CA_CERT, (tls_dir / CA_CERT).read_bytes())
    return out


def peer_device(context) -> str | None:
    """The device id (certificate common name) of a mutual-TLS call's peer; None without TLS."""
    if context is None:
        return None
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else None
