"""Rich notifications as Graph makes them: validation tokens and encrypted resource data.

- ``ValidationTokenSigner`` signs RS256 validation tokens with a key of its own,
  published in the identity stand-in's JWKS (so the app's checks run for real), in
  Graph's v1 form (``sts.windows.net`` issuer, ``appid``) or v2 form
  (``login.microsoftonline.com/.../v2.0`` issuer, ``azp``).
- ``encrypt_content`` encrypts a resource with a subscription's public certificate
  exactly as change-notifications-with-resource-data.md describes: a random AES-256
  key, AES-CBC with PKCS7 padding and the key's first 16 bytes as IV, HMAC-SHA256 of
  the ciphertext, the key wrapped with RSA-OAEP (SHA-1).
- ``make_certificate`` makes a self-signed RSA certificate and key for tests (no
  private key is ever checked in).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from .errors import GraphError

CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
TOKEN_LIFETIME_SECONDS = 3600


def b64url_uint(value: int) -> str:
    """An RSA number as a JWK writes it: big-endian bytes, base64url without padding."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class ValidationTokenSigner:
    """Signs validation tokens; ``jwk()`` is its public key for the JWKS."""

    def __init__(self, key: rsa.RSAPrivateKey | None = None, kid: str | None = None) -> None:
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid or secrets.token_urlsafe(16)

    def jwk(self) -> dict[str, Any]:
        """The public key as one JWKS entry."""
        numbers = self._key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}

    def token(
        self,
        tenant: str,
        audience: str,
        version: int = 1,
        lifetime: int = TOKEN_LIFETIME_SECONDS,
        now: float | None = None,
        **overrides: Any,
    ) -> str:
        """A validation token as Graph sends one; ``overrides`` replace or (None) remove claims."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "aud": audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "tid": tenant,
            "oid": "d3a6d8d8-8b3e-4a4a-9d6b-3d2b2b0f8f11",
            "sub": "d3a6d8d8-8b3e-4a4a-9d6b-3d2b2b0f8f11",
        }
        if version == 1:
            claims |= {"iss": f"https://sts.windows.net/{tenant}/", "appid": CHANGE_TRACKING_APP_ID, "ver": "1.0"}
        else:
            claims |= {
                "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
                "azp": CHANGE_TRACKING_APP_ID,
                "ver": "2.0",
            }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


def forge(token: str) -> str:
    """The same claims under a signature by a key nobody published, keeping the kid."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": header["kid"]})


def thumbprint(der: bytes) -> str:
    """SHA-1 of a DER certificate, upper-case hex, as Graph sends it."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def encrypt_content(resource: dict[str, Any], certificate_b64: str, certificate_id: str) -> dict[str, Any]:
    """``encryptedContent`` for ``resource`` under a subscription's ``encryptionCertificate``."""
    der = base64.b64decode(certificate_b64)
    public_key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("encryptionCertificate is not an RSA certificate")
    key = os.urandom(32)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    plain = padder.update(json.dumps(resource).encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plain) + encryptor.finalize()
    wrapped = public_key.encrypt(
        key, asymmetric.OAEP(mgf=asymmetric.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    return {
        "data": base64.b64encode(data).decode("ascii"),
        "dataSignature": base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode("ascii"),
        "dataKey": base64.b64encode(wrapped).decode("ascii"),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": thumbprint(der),
    }


def tamper(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` with one bit of its ciphertext flipped (the signature no longer matches)."""
    data = bytearray(base64.b64decode(content["data"]))
    data[0] ^= 0x01
    return content | {"data": base64.b64encode(bytes(data)).decode("ascii")}


@dataclass(frozen=True)
class SampleCertificate:
    """A self-signed certificate and its key, as PEM (both) and DER (the certificate)."""

    pem: bytes
    der: bytes

    @property
    def public_base64(self) -> str:
        """The base64 DER Graph wants as ``encryptionCertificate``."""
        return base64.b64encode(self.der).decode("ascii")

    def pfx(self, password: str | None) -> bytes:
        """The certificate and key as PKCS#12, encrypted with ``password`` when given."""
        from cryptography.hazmat.primitives.serialization import pkcs12

        key = serialization.load_pem_private_key(self.pem, None)
        certificate = x509.load_der_x509_certificate(self.der)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("not an RSA key")
        protection = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(b"notifications", key, certificate, None, protection)


def self_signed(key: rsa.RSAPrivateKey, name: str, start: dt.datetime, end: dt.datetime) -> x509.CertificateBuilder:
    """A certificate for ``name`` issued by itself with ``key``, valid from ``start`` to ``end``, to sign."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def make_certificate(name: str = "graph-notifications", expired: bool = False, bits: int = 2048) -> SampleCertificate:
    """A self-signed RSA certificate with its key; ``expired`` makes one whose validity has ended."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=60), now - dt.timedelta(days=30)) if expired else (now, now + dt.timedelta(days=365))
    )
    certificate = self_signed(key, name, start, end).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SampleCertificate(
        certificate.public_bytes(serialization.Encoding.PEM) + key_pem,
        certificate.public_bytes(serialization.Encoding.DER),
    )


# ---- subscriptions and delivery in the simulator ------------------------------------------------


def check_encryption(body: dict[str, Any], rule: Any) -> tuple[bool, str | None, str | None]:
    """(includeResourceData, encryptionCertificate, encryptionCertificateId) of a create request, as Graph checks them.

    ``rule`` is the resource's ResourceRule (models/subscriptions.py), or None for a drive root.
    """
    include = bool(body.get("includeResourceData"))
    if rule is not None and rule.resource_data_required and not include:
        raise GraphError(
            400,
            "InvalidRequest",
            f"includeResourceData must be true for '{body.get('resource')}' with application permissions.",
        )
    if not include:
        return False, None, None
    if rule is None or not rule.resource_data:
        raise GraphError(
            400, "InvalidRequest", f"Rich notifications (includeResourceData) are not supported for {body['resource']}."
        )
    certificate, certificate_id = checked_certificate(body)
    return True, certificate, certificate_id


def checked_certificate(body: dict[str, Any]) -> tuple[str, str]:
    """(encryptionCertificate, encryptionCertificateId) of a request, both present and an RSA certificate."""
    certificate, certificate_id = body.get("encryptionCertificate"), body.get("encryptionCertificateId")
    if not isinstance(certificate, str) or not certificate:
        raise GraphError(400, "InvalidRequest", "encryptionCertificate is required when includeResourceData is true.")
    if not isinstance(certificate_id, str) or not certificate_id:
        raise GraphError(400, "InvalidRequest", "encryptionCertificateId is required when includeResourceData is true.")
    try:
        public_key = x509.load_der_x509_certificate(base64.b64decode(certificate, validate=True)).public_key()
    except ValueError:
        raise GraphError(400, "InvalidRequest", "encryptionCertificate is not a base64-encoded certificate.") from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise GraphError(400, "InvalidRequest", "encryptionCertificate must hold an RSA public key.")
    return certificate, certificate_id


# What the next rich batches carry instead of the real thing (POST /_sim/rich).
FAULTS = ("forged", "expired", "wrong-audience", "other-tenant", "tampered", "unknown-certificate")
# The tenant an "other-tenant" token is minted for: properly signed, but not the subscriber's tenant.
OTHER_TENANT = "22222222-2222-2222-2222-222222222222"


class RichDelivery:
    """Shapes delivered batches: ``validationTokens`` for the subscriptions with resource data.

    Graph makes one token per distinct app and tenant among a batch's items.
    ``faults`` spoil the next rich batches, one fault per batch, for tests.
    """

    def __init__(self, signer: ValidationTokenSigner, tenant: str) -> None:
        self.signer = signer
        self.tenant = tenant
        self.audiences: dict[str, str] = {}  # subscription id -> the subscribing app's id
        self.faults: list[str] = []
        self.token_version = 1
        self.signed = 0

    def clear(self) -> None:
        """Forget faults and counters (reset)."""
        self.faults.clear()
        self.audiences.clear()
        self.token_version = 1
        self.signed = 0

    def shape(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON body of ``batch``."""
        pairs = dict.fromkeys(
            (self.audiences[sid], str(item.get("tenantId") or self.tenant))
            for item in batch
            if (sid := item.get("subscriptionId")) in self.audiences and "lifecycleEvent" not in item
        )
        if not pairs:
            return {"value": batch}
        fault = self.faults.pop(0) if self.faults else None
        tokens = [self._token(app, tenant, fault) for app, tenant in pairs]
        self.signed += 1
        if fault in ("tampered", "unknown-certificate"):
            batch = [_spoil(item, fault) for item in batch]
        return {"value": batch, "validationTokens": tokens}

    def _token(self, app: str, tenant: str, fault: str | None) -> str:
        if fault == "expired":
            return self.signer.token(tenant, app, self.token_version, now=time.time() - 2 * TOKEN_LIFETIME_SECONDS)
        if fault == "wrong-audience":
            return self.signer.token(tenant, "00000000-0000-0000-0000-00000000a0d1", self.token_version)
        if fault == "other-tenant":
            return self.signer.token(OTHER_TENANT, app, self.token_version)
        token = self.signer.token(tenant, app, self.token_version)
        return forge(token) if fault == "forged" else token


def _spoil(item: dict[str, Any], fault: str) -> dict[str, Any]:
    content = item.get("encryptedContent")
    if not isinstance(content, dict):
        return item
    if fault == "tampered":
        return item | {"encryptedContent": tamper(content)}
    return item | {"encryptedContent": content | {"encryptionCertificateId": "not-a-known-certificate"}}
