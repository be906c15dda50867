"""Real-crypto tests for flotilla.certs: the per-cluster CA, CSR signing, key encryption."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from flotilla.certs import authority
from flotilla.certs.keys import SecretBox, SecretError, load_or_create_secret
from flotilla.errors import Invalid

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
NOT_CA = x509.BasicConstraints(ca=False, path_length=None)


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    return authority.create_ca("my-cluster")


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(oid)


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _csr(
    subject: str = "node-1",
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    )
    for value, critical in extensions or []:
        builder = builder.add_extension(value, critical=critical)
    signed = builder.sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM).decode()


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment"]
    names += ["key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names})


def test_create_ca_extensions_and_validity(ca: tuple[str, str]) -> None:
    cert_pem, key_pem = ca
    assert cert_pem.endswith("-----END CERTIFICATE-----\n")
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----") and key_pem.endswith("\n")
    cert = _cert(cert_pem)
    assert cert.subject.rfc4514_string() == cert.issuer.rfc4514_string() == "CN=my-cluster"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(cert)  # self-signed
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=0)
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value == _key_usage(key_cert_sign=True, crl_sign=True)
    ski = _ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    now = dt.datetime.now(dt.UTC)
    assert abs(cert.not_valid_before_utc - (now - dt.timedelta(days=1))) < dt.timedelta(minutes=1)
    assert abs(cert.not_valid_after_utc - (now + dt.timedelta(days=1825))) < dt.timedelta(minutes=1)
    assert authority.not_after(cert_pem) == cert.not_valid_after_utc
    assert 0 < cert.serial_number < 2**128
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert authority.fingerprint(cert_pem) == ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_create_ca_long_or_empty_name() -> None:
    cert = _cert(authority.create_ca("x" * 100, days=10)[0])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "x" * 64
    with pytest.raises(ValueError):
        authority.create_ca("")


def test_server_cert_verifies_and_has_sans(ca: tuple[str, str]) -> None:
    cert_pem, key_pem = authority.issue_server_cert(
        *ca, common_name="node-1", dns_names=["node-1", "localhost"], ips=["10.0.0.5", "::1"]
    )
    cert = _cert(cert_pem)
    cert.verify_directly_issued_by(_cert(ca[0]))
    assert cert.issuer == _cert(ca[0]).subject
    assert _san(cert).get_values_for_type(x509.DNSName) == ["node-1", "localhost"]
    ips = [ipaddress.ip_address(ip) for ip in ("10.0.0.5", "::1", "127.0.0.1")]
    assert _san(cert).get_values_for_type(x509.IPAddress) == ips
    assert _eku(cert) == [SERVER_AUTH, CLIENT_AUTH]
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value == _key_usage(digital_signature=True, key_encipherment=True)
    assert _ext(cert, ExtensionOID.BASIC_CONSTRAINTS).value == NOT_CA
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key() == cert.public_key()
    with pytest.raises(ValueError):
        authority.issue_server_cert(*ca, common_name="n", dns_names=[], ips=["not-an-ip"])


def test_client_cert(ca: tuple[str, str]) -> None:
    cert = _cert(authority.issue_client_cert(*ca)[0])
    cert.verify_directly_issued_by(_cert(ca[0]))
    assert cert.subject.rfc4514_string() == "O=system:masters,CN=admin"
    assert _eku(cert) == [CLIENT_AUTH]
    assert _ext(cert, ExtensionOID.BASIC_CONSTRAINTS).critical


def test_rotated_ca_does_not_verify_old_certs(ca: tuple[str, str]) -> None:
    old_cert = _cert(authority.issue_client_cert(*ca)[0])
    new_ca = _cert(authority.create_ca("my-cluster")[0])  # same name, new key
    with pytest.raises((ValueError, InvalidSignature)):
        old_cert.verify_directly_issued_by(new_ca)


def test_sign_csr_keeps_subject_and_removes_ca_flag(ca: tuple[str, str]) -> None:
    csr = _csr(
        "system:node:n1",
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), False),
            (x509.SubjectAlternativeName([x509.DNSName("n1.example")]), False),
            (x509.OCSPNoCheck(), False),  # not allowed, not critical: dropped
        ],
    )
    cert = _cert(authority.sign_csr(*ca, csr))
    cert.verify_directly_issued_by(_cert(ca[0]))
    assert cert.subject.rfc4514_string() == "CN=system:node:n1"
    assert cert.issuer == _cert(ca[0]).subject
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value == NOT_CA
    assert _ext(cert, ExtensionOID.KEY_USAGE).value == _key_usage(digital_signature=True)
    assert _san(cert).get_values_for_type(x509.DNSName) == ["n1.example"]
    assert _eku(cert) == [CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, ExtensionOID.OCSP_NO_CHECK)


def test_sign_csr_keeps_requested_eku_and_rsa_keys(ca: tuple[str, str]) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = _csr("web", [(x509.ExtendedKeyUsage([SERVER_AUTH]), False)], key=rsa_key)
    cert = _cert(authority.sign_csr(*ca, csr, days=30))
    assert _eku(cert) == [SERVER_AUTH]
    assert cert.public_key() == rsa_key.public_key()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=31)


def test_sign_csr_refuses_critical_disallowed_extension(ca: tuple[str, str]) -> None:
    with pytest.raises(Invalid, match=r"^Extension 'OCSPNoCheck' not allowed$"):
        authority.sign_csr(*ca, _csr(extensions=[(x509.OCSPNoCheck(), True)]))
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
    with pytest.raises(Invalid, match=r"^Extension '1\.2\.3\.4\.5' not allowed$"):
        authority.sign_csr(*ca, _csr(extensions=[(unknown, True)]))
    critical_ku = _key_usage(digital_signature=True, key_cert_sign=True)
    with pytest.raises(Invalid, match=r"^Extension 'keyUsage' not allowed$"):
        authority.sign_csr(*ca, _csr(extensions=[(critical_ku, True)]))


@pytest.mark.parametrize("garbage", ["", "hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END"])
def test_sign_csr_rejects_garbage(ca: tuple[str, str], garbage: str) -> None:
    with pytest.raises(Invalid, match=r"^Received invalid csr \(.*\)\.$"):
        authority.sign_csr(*ca, garbage)


def test_sign_csr_rejects_bad_signature(ca: tuple[str, str]) -> None:
    csr = x509.load_pem_x509_csr(_csr().encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(Invalid, match=r"^Received invalid csr \(.*signature.*\)\.$"):
        authority.sign_csr(*ca, pem)


def test_generate_csr_signs_into_client_cert(ca: tuple[str, str]) -> None:
    csr_pem, key_pem = authority.generate_csr()
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "O=system:masters,CN=admin"
    cert = _cert(authority.sign_csr(*ca, csr_pem))
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key() == cert.public_key()
    assert _eku(cert) == [CLIENT_AUTH]


def _handshake(tmp: Path, ca_pem: str, server: tuple[str, str], client: tuple[str, str], host: str) -> str:
    """Mutual TLS on 127.0.0.1, strict X.509 checks: "ok" or the first error seen."""
    paths = [tmp / f"{n}.pem" for n in ("sc", "sk", "cc", "ck")]
    for path, text in zip(paths, [*server, *client], strict=True):
        path.write_text(text)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths[0], paths[1])
    server_ctx.load_verify_locations(cadata=ca_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cadata=ca_pem)
    client_ctx.load_cert_chain(paths[2], paths[3])
    for ctx in (server_ctx, client_ctx):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT

    errors: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(10)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError) as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=host) as tls,
            ):
                greeting = tls.recv(16)
        except (ssl.SSLError, OSError) as exc:
            greeting = str(exc).encode()
        thread.join(10)
    if errors:
        return errors[0]
    return "ok" if greeting == b"hello" else f"client got {greeting!r}"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_handshake_with_client_cert_from_same_ca(ca: tuple[str, str], tmp_path: Path, host: str) -> None:
    server = authority.issue_server_cert(*ca, common_name="node-1", dns_names=[], ips=[])
    assert _handshake(tmp_path, ca[0], server, authority.issue_client_cert(*ca), host) == "ok"
    csr_pem, key_pem = authority.generate_csr()
    assert _handshake(tmp_path, ca[0], server, (authority.sign_csr(*ca, csr_pem), key_pem), host) == "ok"


def test_tls_handshake_refuses_client_cert_from_other_ca(ca: tuple[str, str], tmp_path: Path) -> None:
    server = authority.issue_server_cert(*ca, common_name="node-1", dns_names=[], ips=[])
    stranger = authority.issue_client_cert(*authority.create_ca("my-cluster"))
    assert "certificate verify failed" in _handshake(tmp_path, ca[0], server, stranger, "localhost")


def test_secret_box_round_trip_and_fresh_nonce() -> None:
    box = SecretBox("s3cret")
    token = box.encrypt(b"-----BEGIN PRIVATE KEY-----\n")
    assert token.startswith("v1:") and token.isascii()
    assert box.decrypt(token) == b"-----BEGIN PRIVATE KEY-----\n"
    assert box.encrypt(b"x") != box.encrypt(b"x")
    assert SecretBox("s3cret").decrypt(box.encrypt(b"")) == b""


def test_secret_box_detects_tampering_and_wrong_keys() -> None:
    box = SecretBox("s3cret")
    token = box.encrypt(b"private key bytes")
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    for bad in (tampered, token[:-4], "v1:", "v1:!!!", "v2:" + token[3:], "garbage"):
        with pytest.raises(SecretError):
            box.decrypt(bad)
    token = SecretBox("one").encrypt(b"data")  # wrong secret or context
    with pytest.raises(SecretError):
        SecretBox("two").decrypt(token)
    with pytest.raises(SecretError):
        SecretBox("one", context=b"other").decrypt(token)
    with pytest.raises(ValueError):
        SecretBox("  ")


def test_load_or_create_secret(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 44  # 32 bytes, urlsafe base64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary file left
    SecretBox(secret).decrypt(SecretBox(secret).encrypt(b"ok"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretError):
        load_or_create_secret(empty)
