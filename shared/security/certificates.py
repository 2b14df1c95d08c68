"""The certificates Graph encrypts resource data with: loading, thumbprints, selection.

A certificate comes from a PFX or PEM file holding the certificate and its private
key, or from a Key Vault secret URI (the secret Key Vault keeps for a certificate:
a base64 PFX or a PEM). During a rotation the previous certificate keeps decrypting
what Graph encrypted before the switch; validity dates are ignored, as Graph does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import DecryptionError, InvalidSettingError

KEY_VAULT_SECRET = re.compile(
    r"^https://[^/]+\.vault\.(?:azure\.net|azure\.cn|usgovcloudapi\.net)/secrets/[^/]+(?:/[^/]*)?$"
)


@dataclass(frozen=True)
class NotificationCertificate:
    """One certificate with its private key, under the id subscriptions name it by."""

    certificate_id: str
    der: bytes
    private_key: Any  # cryptography's RSAPrivateKey

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER certificate, upper-case hex, as Graph sends it."""
        return hashlib.sha1(self.der, usedforsecurity=False).hexdigest().upper()

    @property
    def public_base64(self) -> str:
        """The public certificate as subscription creation wants it (``encryptionCertificate``)."""
        return base64.b64encode(self.der).decode("ascii")


class CertificateBook:
    """The current certificate and, during a rotation, the previous one."""

    def __init__(self, current: NotificationCertificate, previous: NotificationCertificate | None = None) -> None:
        self.current = current
        self._all: Sequence[NotificationCertificate] = (current,) if previous is None else (current, previous)

    def select(self, certificate_id: object, thumbprint: object) -> NotificationCertificate:
        """The certificate Graph named; raise DecryptionError when none has that id and thumbprint."""
        named = [c for c in self._all if c.certificate_id == certificate_id]
        if not named:
            raise DecryptionError("unknown certificate id")
        wanted = thumbprint.upper() if isinstance(thumbprint, str) else ""
        for certificate in named:
            if certificate.thumbprint == wanted:
                return certificate
        raise DecryptionError("certificate thumbprint mismatch")


def parse_certificate(data: bytes, password: str | None, certificate_id: str, key: str) -> NotificationCertificate:
    """A certificate and RSA private key from PFX or PEM bytes; ``key`` names the setting in errors."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509 import Certificate, load_pem_x509_certificate

    secret = password.encode("utf-8") if password else None
    certificate: Certificate | None
    try:
        if b"-----BEGIN" in data:
            certificate = load_pem_x509_certificate(data)
            private_key: Any = serialization.load_pem_private_key(data, secret)
        else:
            private_key, certificate, _ = pkcs12.load_key_and_certificates(data, secret)
    except (ValueError, TypeError) as exc:
        # The library's message names the format problem, never the key material.
        raise InvalidSettingError(key, f"not a PFX or PEM certificate with its private key ({exc})") from None
    if certificate is None or not isinstance(private_key, rsa.RSAPrivateKey):
        raise InvalidSettingError(key, "needs an RSA certificate and its private key")
    public_key = certificate.public_key()
    if (
        not isinstance(public_key, rsa.RSAPublicKey)
        or public_key.public_numbers() != private_key.public_key().public_numbers()
    ):
        raise InvalidSettingError(key, "the private key does not belong to the certificate")
    der = certificate.public_bytes(serialization.Encoding.DER)
    return NotificationCertificate(certificate_id, der, private_key)


async def load_certificate(source: str, password: str | None, certificate_id: str, key: str) -> NotificationCertificate:
    """Load from a file path or a Key Vault secret URI (read with DefaultAzureCredential)."""
    if KEY_VAULT_SECRET.match(source):
        data = await _key_vault_secret(source)
    else:
        try:
            data = await asyncio.to_thread(Path(source).read_bytes)
        except OSError as exc:
            raise InvalidSettingError(key, f"cannot read the file ({exc.strerror})") from None
    return parse_certificate(data, password, certificate_id, key)


async def _key_vault_secret(uri: str) -> bytes:
    # Imported only when a vault is configured: most deployments never load these SDKs.
    from azure.identity.aio import DefaultAzureCredential
    from azure.keyvault.secrets.aio import SecretClient

    parts = uri.split("/")
    vault, name = "/".join(parts[:3]), parts[4]
    version = parts[5] if len(parts) > 5 and parts[5] else None
    async with DefaultAzureCredential() as credential, SecretClient(vault, credential) as client:
        secret = await client.get_secret(name, version)
    value = secret.value or ""
    # Key Vault keeps a certificate's secret as a base64 PFX, or as PEM text.
    return value.encode("utf-8") if "-----BEGIN" in value else base64.b64decode(value)
