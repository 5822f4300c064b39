"""A fleet's certificates for the Zenoh link: one CA, a certificate per robot and one per server.

Mutual TLS: every bridge presents a certificate signed by the fleet's CA and checks the other's.
A certificate's common name is its identity: a robot's is its name (the ROS namespace of its
topics, e.g. `r1`), so that the server can tell which robot's keys a peer may use. Server
certificates carry the host names and addresses the robots connect to (TLS checks them); robot
certificates name only the robot. Keys are ECDSA P-256, written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # a ROS namespace component: also the identity
CA_NAME = "split_perception fleet CA"


@dataclass(frozen=True)
class Issued:
    certificate: Path
    private_key: Path


def _x509():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:  # pragma: no cover - requirements.txt pins it
        raise ConfigError("creating certificates needs the `cryptography` package (pip install -r requirements.txt)") from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _write_key(path: Path, key) -> None:
    _, _, serialization, *_ = _x509()
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert) -> None:
    _, _, serialization, *_ = _x509()
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid identity: letters, digits and _ , starting with a letter "
                          "(a robot's is its ROS namespace)")
    return name


def create_ca(out: Path, days: int = 3650) -> Issued:
    """A new fleet CA in `out` (ca.pem, ca.key); refuses to replace one."""
    x509, hashes, _, ec, _, NameOID = _x509()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    issued = Issued(out / "ca.pem", out / "ca.key")
    if issued.certificate.exists() or issued.private_key.exists():
        raise ConfigError(f"{out} already holds a CA (ca.pem/ca.key): use it, or choose another folder")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(issued.private_key, key)
    _write_cert(issued.certificate, cert)
    return issued


def issue(ca_dir: Path, name: str, hosts: tuple[str, ...] = (), out: Path | None = None, days: int = 825,
          not_before: dt.datetime | None = None) -> Issued:
    """Certificate + key for identity `name` (common name), signed by the CA in `ca_dir`, written as
    `<out>/<name>.pem` and `<name>.key`; `hosts` (names or IP addresses) go into subjectAltName."""
    x509, hashes, serialization, ec, EKU, NameOID = _x509()
    check_name(name)
    ca_dir = Path(ca_dir)
    out = Path(out or ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no usable fleet CA in {ca_dir} (ca.pem, ca.key): {exc}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    alt = []
    for h in (name, *hosts):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            # a bridge is TLS server when it listens and TLS client when it connects
            .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    issued = Issued(out / f"{name}.pem", out / f"{name}.key")
    _write_key(issued.private_key, key)
    _write_cert(issued.certificate, cert)
    return issued


def run(args) -> int:
    """`split-perception fleet-certs`: the CA (made once, reused to add robots later), then the server's
    and each robot's certificate; an identity that already has one is refused, not replaced."""
    out = Path(args.out)
    names = [check_name(n) for n in ([args.server] if args.server else []) + list(args.robots or [])]
    if len(set(names)) != len(names):
        raise ConfigError(f"an identity is named twice: {names}")
    if not names:
        raise ConfigError("nothing to issue: give --robots and/or --server")
    taken = [str(out / f"{n}.pem") for n in names if (out / f"{n}.pem").exists() or (out / f"{n}.key").exists()]
    if taken:
        raise ConfigError(f"{', '.join(taken)} already issued: remove it (and its key) to issue a new one")
    if args.server and not args.host:
        raise ConfigError("the server's certificate needs --host: the names or addresses robots connect to")
    if (out / "ca.pem").exists():
        print(f"fleet CA: {out / 'ca.pem'} (existing)")
    else:
        print(f"fleet CA: {create_ca(out, args.ca_days).certificate} (new; keep ca.key off the robots and servers)")
    for n in names:
        issued = issue(out, n, tuple(args.host or ()) if n == args.server else (), out, args.days)
        print(f"{n}: {issued.certificate} {issued.private_key} (mode 0600)")
    print("give each machine ca.pem and its own <name>.pem and <name>.key")
    return 0
