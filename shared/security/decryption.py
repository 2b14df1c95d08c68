"""Decrypting ``encryptedContent`` exactly as Graph documents it (change-notifications-with-resource-data).

1. the symmetric key: ``dataKey`` decrypted with RSA-OAEP (SHA-1) by the certificate
   named by ``encryptionCertificateId`` and its thumbprint;
2. HMAC-SHA256 of ``data`` under that key, compared with ``dataSignature`` in
   constant time, before anything is decrypted;
3. ``data`` decrypted with AES-CBC, PKCS7 padding, IV = the key's first 16 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from shared.errors import DecryptionError
from shared.security.certificates import CertificateBook

IV_BYTES = 16


def decrypt_content(content: object, certificates: CertificateBook) -> dict[str, Any]:
    """The resource ``content`` (an ``encryptedContent`` object) carries; raise DecryptionError."""
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if not isinstance(content, Mapping):
        raise DecryptionError("encryptedContent is not an object")
    certificate = certificates.select(
        content.get("encryptionCertificateId"), content.get("encryptionCertificateThumbprint")
    )
    data = _decode(content, "data")
    signature = _decode(content, "dataSignature")
    wrapped = _decode(content, "dataKey")
    try:
        key: bytes = certificate.private_key.decrypt(
            wrapped,
            asymmetric.OAEP(mgf=asymmetric.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
        )
    except ValueError:
        raise DecryptionError("dataKey does not decrypt with the certificate") from None
    expected = hmac.new(key, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise DecryptionError("dataSignature mismatch")
    if len(key) not in (16, 24, 32) or not data or len(data) % IV_BYTES:
        raise DecryptionError("data is not AES-CBC ciphertext for this key")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:IV_BYTES])).decryptor()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()
        resource = json.loads(plain)
    except ValueError:  # bad padding, bad UTF-8 or bad JSON
        raise DecryptionError("decrypted data is not JSON") from None
    if not isinstance(resource, dict):
        raise DecryptionError("decrypted data is not a JSON object")
    return resource


def _decode(content: Mapping[str, Any], field: str) -> bytes:
    value = content.get(field)
    if not isinstance(value, str) or not value:
        raise DecryptionError(f"no {field}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"{field} is not base64") from None
