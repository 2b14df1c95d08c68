"""Rich notifications: which subscriptions ask for resource data, and with which certificate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from shared.config.settings import Settings

if TYPE_CHECKING:
    from shared.config.security import CertificateSource
    from shared.security.certificates import CertificateBook, NotificationCertificate
    from shared.security.resource_data import ResourceDataReader


async def certificate_book(settings: Settings) -> CertificateBook | None:
    """The notification certificates (current, and previous during a rotation), or None when none is set."""
    if settings.resource_data is None:
        return None
    from shared.security.certificates import CertificateBook, load_certificate

    def load(source: CertificateSource) -> Awaitable[NotificationCertificate]:
        return load_certificate(source.location, source.password, source.certificate_id, source.setting)

    previous = settings.resource_data.previous
    return CertificateBook(
        await load(settings.resource_data.current), await load(previous) if previous is not None else None
    )


def encryption_for(
    settings: Settings, certificates: CertificateBook | None
) -> Callable[[str, bool], tuple[str, str] | None]:
    """(resource, asked) -> (public certificate, id) for the entries that ask for resource data.

    ``asked``: the reconciler saw the desired entry ask (expanded sets included); the
    settings' own entries cover a renewal before any reconciliation in this process.
    """
    from shared.model.catalog import readable_kind

    wanted = {s.resource.strip("/") for s in settings.subscriptions if s.include_resource_data}

    def encryption(resource: str, asked: bool) -> tuple[str, str] | None:
        kind = readable_kind(resource)
        rich = asked or resource.strip("/") in wanted or (kind is not None and kind.resource_data_required)
        if not rich or certificates is None:
            return None
        return certificates.current.public_base64, certificates.current.certificate_id

    return encryption


def resource_data_reader(certificates: CertificateBook | None, settings: Settings) -> ResourceDataReader | None:
    """Decrypts rich notifications; None without certificates."""
    if certificates is None:
        return None
    from shared.clock import utcnow
    from shared.security.resource_data import ResourceDataReader

    window = (settings.calendar_window_days_past, settings.calendar_window_days_ahead)
    return ResourceDataReader(certificates, utcnow, window)
