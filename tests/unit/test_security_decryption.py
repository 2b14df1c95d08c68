"""Decrypting encryptedContent: the good path, each rejection in a test of its own, rotation, loading."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from devtools.graphsim.rich import SampleCertificate, encrypt_content, make_certificate, tamper
from shared.errors import DecryptionError, InvalidSettingError
from shared.security.certificates import CertificateBook, NotificationCertificate, load_certificate, parse_certificate
from shared.security.decryption import decrypt_content

MESSAGE: dict[str, Any] = {
    "@odata.type": "#Microsoft.Graph.chatMessage",
    "id": "1616990032035",
    "chatId": "19:8ea0e38b-efb3-4757-924a-5f94061cf8c2_97f62344-57dc-409c-88ad-c4af14158ff5@unq.gbl.spaces",
    "body": {"contentType": "text", "content": "hello"},
    "lastModifiedDateTime": "2026-11-22T10:00:00Z",
}


@pytest.fixture(scope="module")
def current_pem() -> SampleCertificate:
    return make_certificate("current")


@pytest.fixture(scope="module")
def previous_pem() -> SampleCertificate:
    return make_certificate("previous")


def loaded(pem: SampleCertificate, certificate_id: str = "cert-2026") -> NotificationCertificate:
    return parse_certificate(pem.pem, None, certificate_id, "NOTIFICATION_CERTIFICATE")


def reason(content: Any, book: CertificateBook) -> str:
    with pytest.raises(DecryptionError) as caught:
        decrypt_content(content, book)
    return caught.value.reason


def test_content_encrypted_as_documented_decrypts_to_the_resource(current_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    assert decrypt_content(encrypt_content(MESSAGE, current_pem.public_base64, "cert-2026"), book) == MESSAGE


def test_tampered_data_is_refused_before_decrypting(current_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    content = tamper(encrypt_content(MESSAGE, current_pem.public_base64, "cert-2026"))
    assert reason(content, book) == "dataSignature mismatch"


def test_a_tampered_signature_is_refused(current_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    content = encrypt_content(MESSAGE, current_pem.public_base64, "cert-2026")
    content["dataSignature"] = base64.b64encode(b"\x00" * 32).decode()
    assert reason(content, book) == "dataSignature mismatch"


def test_an_unknown_certificate_id_is_refused(current_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    content = encrypt_content(MESSAGE, current_pem.public_base64, "someone-else")
    assert reason(content, book) == "unknown certificate id"


def test_a_thumbprint_of_another_certificate_is_refused(
    current_pem: SampleCertificate, previous_pem: SampleCertificate
) -> None:
    book = CertificateBook(loaded(current_pem))
    # Same id, but encrypted for another certificate.
    content = encrypt_content(MESSAGE, previous_pem.public_base64, "cert-2026")
    assert reason(content, book) == "certificate thumbprint mismatch"


def test_the_thumbprint_is_compared_case_insensitively(current_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    content = encrypt_content(MESSAGE, current_pem.public_base64, "cert-2026")
    content["encryptionCertificateThumbprint"] = content["encryptionCertificateThumbprint"].lower()
    assert decrypt_content(content, book) == MESSAGE


def test_the_previous_certificate_decrypts_during_a_rotation(
    current_pem: SampleCertificate, previous_pem: SampleCertificate
) -> None:
    book = CertificateBook(loaded(current_pem, "cert-2027"), loaded(previous_pem, "cert-2026"))
    before = encrypt_content(MESSAGE, previous_pem.public_base64, "cert-2026")
    after = encrypt_content(MESSAGE, current_pem.public_base64, "cert-2027")
    assert decrypt_content(before, book) == decrypt_content(after, book) == MESSAGE


def test_an_expired_certificate_still_decrypts() -> None:
    expired = make_certificate("expired", expired=True)
    book = CertificateBook(loaded(expired))
    assert decrypt_content(encrypt_content(MESSAGE, expired.public_base64, "cert-2026"), book) == MESSAGE


def test_content_that_is_not_base64_is_refused(current_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    content = encrypt_content(MESSAGE, current_pem.public_base64, "cert-2026") | {"data": "%%%"}
    assert reason(content, book) == "data is not base64"


def test_a_data_key_for_another_key_is_refused(current_pem: SampleCertificate, previous_pem: SampleCertificate) -> None:
    book = CertificateBook(loaded(current_pem))
    mine = encrypt_content(MESSAGE, current_pem.public_base64, "cert-2026")
    theirs = encrypt_content(MESSAGE, previous_pem.public_base64, "cert-2026")
    assert reason(mine | {"dataKey": theirs["dataKey"]}, book) == "dataKey does not decrypt with the certificate"


def test_a_pfx_with_a_password_loads(tmp_path: Path, current_pem: SampleCertificate) -> None:
    path = tmp_path / "notifications.pfx"
    path.write_bytes(current_pem.pfx("s3cret"))
    certificate = asyncio.run(load_certificate(str(path), "s3cret", "cert-2026", "NOTIFICATION_CERTIFICATE"))
    assert certificate.public_base64 == current_pem.public_base64


def test_a_pfx_with_the_wrong_password_names_the_setting(tmp_path: Path, current_pem: SampleCertificate) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        parse_certificate(current_pem.pfx("s3cret"), "wrong", "cert-2026", "NOTIFICATION_CERTIFICATE")
    assert caught.value.key == "NOTIFICATION_CERTIFICATE"


def test_a_certificate_without_its_key_is_refused(current_pem: SampleCertificate) -> None:
    public_only = current_pem.pem.split(b"-----BEGIN PRIVATE KEY-----")[0]
    with pytest.raises(InvalidSettingError):
        parse_certificate(public_only, None, "cert-2026", "NOTIFICATION_CERTIFICATE_PREVIOUS")


def test_the_public_certificate_is_sent_as_base64_der(current_pem: SampleCertificate) -> None:
    assert base64.b64decode(loaded(current_pem).public_base64) == current_pem.der
    assert json.dumps(loaded(current_pem).public_base64)  # plain ASCII for the subscription body
