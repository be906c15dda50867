"""Per-cluster certificate authority: pure functions over PEM strings.

Key choice: Magnum makes RSA-2048 keys. Flotilla makes EC P-256 keys instead, because
generating one takes microseconds instead of tens to hundreds of milliseconds (three
CAs plus node and client certs per cluster create or rotate), and every consumer we
serve accepts them: Docker Engine / docker CLI (Go ``crypto/tls``), kubectl, Python
``ssl``. CSRs sent to :func:`sign_csr` may carry any key type ``cryptography`` parses
(RSA from magnumclient included); the CA signs them with ECDSA-SHA256.

Validity follows Magnum (§13.5): from now - 1 day until now + ``days`` (1825 by
default), serial number = a random UUID as an integer.

PEM conventions: every function here returns standard PEM text *with* a trailing
newline. The Magnum API returns PEM without it (§11.4); the API layer strips it.
Private keys are unencrypted PKCS#8 (``-----BEGIN PRIVATE KEY-----``); encrypt them
at rest with :class:`flotilla.certs.keys.SecretBox`.

Input certificates/keys created by this module are trusted: malformed ones raise
``ValueError`` from ``cryptography``. Only :func:`sign_csr`, which takes user input,
maps problems to :class:`flotilla.errors.Invalid`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from flotilla.errors import Invalid

DEFAULT_DAYS = 1825
_MAX_CN = 64  # RFC 5280 ub-common-name; cryptography refuses longer values.
# CA keys we can sign with: ours are EC; RSA is accepted for imported CAs.
_CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH

# Extensions a CSR may carry into a signed certificate (Magnum's [x509] allowed_extensions).
_ALLOWED_EXTENSIONS = frozenset(
    {
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    }
)
# Key usages a CSR may keep (Magnum's [x509] allowed_key_usage, CA usages removed).
_ALLOWED_KEY_USAGES = ("digital_signature", "key_encipherment", "content_commitment")
# Attribute names of x509.KeyUsage, in bit order (content_commitment = nonRepudiation).
_ALL_KEY_USAGES = tuple(
    "digital_signature content_commitment key_encipherment data_encipherment key_agreement"
    " key_cert_sign crl_sign encipher_only decipher_only".split()
)


def _usage(*names: str) -> x509.KeyUsage:
    """A KeyUsage with exactly ``names`` (attribute names of :class:`x509.KeyUsage`) set."""
    return x509.KeyUsage(**{attr: attr in names for attr in _ALL_KEY_USAGES})


_LEAF_USAGE = _usage("digital_signature", "key_encipherment")


def create_ca(common_name: str, *, days: int = DEFAULT_DAYS) -> tuple[str, str]:
    """Create a self-signed CA; return ``(ca_cert_pem, ca_key_pem)``.

    Subject and issuer are ``CN=<common_name>`` (cut to 64 characters; an empty name
    raises ``ValueError``). Extensions: basicConstraints CA:true pathlen 0 (critical),
    keyUsage keyCertSign+cRLSign (critical), subjectKeyIdentifier.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def issue_server_cert(
    ca_cert_pem: str,
    ca_key_pem: str,
    *,
    common_name: str,
    dns_names: Sequence[str],
    ips: Sequence[str],
    days: int = DEFAULT_DAYS,
) -> tuple[str, str]:
    """Issue a certificate for a daemon (e.g. Docker Engine); return ``(cert_pem, key_pem)``.

    subjectAltName holds ``dns_names`` and ``ips`` plus ``localhost`` and ``127.0.0.1``
    (duplicates removed). extendedKeyUsage is serverAuth+clientAuth, so daemons can also
    authenticate to each other (swarm). A malformed IP raises ``ValueError``.
    """
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys([*dns_names, "localhost"])]
    alt_names += [x509.IPAddress(ip) for ip in dict.fromkeys(map(ipaddress.ip_address, [*ips, "127.0.0.1"]))]
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, _CLIENT_AUTH])
    san = x509.SubjectAlternativeName(alt_names)
    return _issue(ca_cert_pem, ca_key_pem, _name(common_name), days, [eku, san])


def issue_client_cert(
    ca_cert_pem: str,
    ca_key_pem: str,
    *,
    common_name: str = "admin",
    organization: str | None = "system:masters",
) -> tuple[str, str]:
    """Issue a client certificate (Magnum's ``magnum_cert_ref``); return ``(cert_pem, key_pem)``.

    Subject ``CN=<common_name>, O=<organization>`` (no O when None), extendedKeyUsage
    clientAuth, valid for :data:`DEFAULT_DAYS`.
    """
    eku = x509.ExtendedKeyUsage([_CLIENT_AUTH])
    return _issue(ca_cert_pem, ca_key_pem, _name(common_name, organization), DEFAULT_DAYS, [eku])


def sign_csr(ca_cert_pem: str, ca_key_pem: str, csr_pem: str, *, days: int = DEFAULT_DAYS) -> str:
    """Sign a user's CSR with the CA (``POST /v1/certificates``); return the cert PEM.

    Magnum's rules: the subject is the CSR's, the issuer the CA's subject. Of the CSR's
    extensions only keyUsage, extendedKeyUsage, subjectAltName, basicConstraints and
    subjectKeyIdentifier are copied; a disallowed *critical* extension raises
    ``Invalid("Extension 'X' not allowed")`` (other disallowed ones are dropped). Key
    usages are limited to digitalSignature/keyEncipherment/nonRepudiation: a critical
    keyUsage asking for more is refused the same way, a non-critical one is trimmed
    (and dropped if nothing is left). basicConstraints is always CA:false (critical).
    Without an extendedKeyUsage the certificate gets clientAuth, so docker clients
    work. An unparseable CSR or one whose signature does not verify raises
    ``Invalid("Received invalid csr ...")``.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8"))
        requested = list(csr.extensions)
        public_key = csr.public_key()
        signature_ok = csr.is_signature_valid
    except UnsupportedAlgorithm as exc:
        raise Invalid("Received invalid csr (unsupported key or signature algorithm).") from exc
    except (ValueError, UnicodeError, x509.DuplicateExtension) as exc:
        raise Invalid("Received invalid csr (not a well-formed PEM certificate request).") from exc
    if not signature_ok:
        raise Invalid("Received invalid csr (its signature does not match its public key).")

    # basicConstraints is always replaced by CA:false; defaults fill in what is missing.
    kept: dict[x509.ObjectIdentifier, tuple[x509.ExtensionType, bool]] = {
        ExtensionOID.BASIC_CONSTRAINTS: (x509.BasicConstraints(ca=False, path_length=None), True)
    }
    for ext in requested:
        if ext.oid not in _ALLOWED_EXTENSIONS:
            if ext.critical:
                raise Invalid(f"Extension '{_ext_name(ext.oid)}' not allowed")
        elif isinstance(ext.value, x509.KeyUsage):
            usage = _filter_key_usage(ext.value, critical=ext.critical)
            if usage is not None:
                kept[ext.oid] = (usage, ext.critical)
        elif not isinstance(ext.value, x509.BasicConstraints):
            kept[ext.oid] = (ext.value, ext.critical)
    kept.setdefault(ExtensionOID.EXTENDED_KEY_USAGE, (x509.ExtendedKeyUsage([_CLIENT_AUTH]), False))
    kept.setdefault(
        ExtensionOID.SUBJECT_KEY_IDENTIFIER, (x509.SubjectKeyIdentifier.from_public_key(public_key), False)
    )
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    builder = _builder(csr.subject, ca_cert.subject, public_key, days)
    for value, critical in kept.values():
        builder = builder.add_extension(value, critical=critical)
    builder = builder.add_extension(_aki(ca_cert), critical=False)
    return _cert_pem(builder.sign(ca_key, hashes.SHA256()))


def derive_key(ca_key_pem: str, purpose: str) -> str:
    """An EC P-256 private key (PKCS#8 PEM) derived from the CA's key with HKDF-SHA256 and
    ``purpose`` as info: deterministic, so a resumed operation gets the same key without
    storing another secret; independent keys per purpose; new ones with a new CA."""
    key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None)
    secret = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=b"flotilla-derived-key", info=purpose.encode())
    scalar = int.from_bytes(okm.derive(secret), "big") % (order - 1) + 1
    return _key_pem(ec.derive_private_key(scalar, ec.SECP256R1()))


def generate_csr(common_name: str = "admin", organization: str = "system:masters") -> tuple[str, str]:
    """Make a key and a CSR for our CLI's cluster-config; return ``(csr_pem, key_pem)``.

    The key is EC P-256 (docker CLI and kubectl accept it); the CSR's subject is
    ``CN=<common_name>, O=<organization>`` and it requests extendedKeyUsage clientAuth.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name, organization))
        .add_extension(x509.ExtendedKeyUsage([_CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), _key_pem(key)


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of the certificate's DER, as upper-case hex pairs joined by ``:``.

    Same text as ``openssl x509 -noout -fingerprint -sha256`` prints after ``=``.
    """
    digest = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def common_name(cert_pem: str) -> str:
    """The subject's common name (empty when it has none)."""
    attrs = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME
    )
    return str(attrs[0].value) if attrs else ""


def not_after(cert_pem: str) -> dt.datetime:
    """End of the certificate's validity, as a timezone-aware UTC datetime."""
    return x509.load_pem_x509_certificate(cert_pem.encode("ascii")).not_valid_after_utc


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    if not common_name:
        raise ValueError("a certificate needs a non-empty common name")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_MAX_CN])]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(uuid.uuid4().int)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _issue(
    ca_cert_pem: str,
    ca_key_pem: str,
    subject: x509.Name,
    days: int,
    extensions: Iterable[x509.ExtensionType],
) -> tuple[str, str]:
    """Issue a leaf certificate for a new EC key, with the usual leaf extensions."""
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(ca_cert), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)


def _load_ca(ca_cert_pem: str, ca_key_pem: str) -> tuple[x509.Certificate, _CaKey]:
    cert = x509.load_pem_x509_certificate(ca_cert_pem.encode("ascii"))
    key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None)
    if not isinstance(key, _CaKey):
        raise ValueError(f"unsupported CA key type {type(key).__name__}")
    return cert, key


def _aki(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _filter_key_usage(usage: x509.KeyUsage, *, critical: bool) -> x509.KeyUsage | None:
    """Keep the allowed usages; refuse a critical request for more; None if none left."""
    kept: list[str] = []
    for attr in _ALL_KEY_USAGES:
        try:
            wanted = bool(getattr(usage, attr))
        except ValueError:  # encipher_only/decipher_only without key_agreement
            wanted = False
        if wanted and attr not in _ALLOWED_KEY_USAGES and critical:
            raise Invalid("Extension 'keyUsage' not allowed")
        if wanted and attr in _ALLOWED_KEY_USAGES:
            kept.append(attr)
    return _usage(*kept) if kept else None


def _ext_name(oid: x509.ObjectIdentifier) -> str:
    name = oid._name
    return oid.dotted_string if name == "Unknown OID" else name


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
