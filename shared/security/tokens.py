"""Checking the ``validationTokens`` of a rich notification batch (PyJWT).

Each token must carry a valid signature by a key of the authority's OpenID
configuration, be unexpired, be meant for this app (``aud``), come from an issuer
of the tenant this app serves (GRAPH_TENANT_ID; v1 and v2 forms by default), and
name Graph's change-tracking app as its caller (``appid`` in v1, ``azp`` in v2), as
Graph's change-notifications-with-resource-data.md lists them. The token's own
``tid`` is never trusted to pick the issuer: a token Graph minted for another
tenant is refused, and so is a batch whose items name another ``tenantId``.

The keys are fetched once and cached; a key id the cache lacks triggers a refetch
at most once every ``refetch_interval`` seconds, so forged key ids cannot make this
app hammer the authority.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from shared.errors import AuthorityUnavailableError, ValidationTokenError
from shared.model.issuers import DEFAULT_ISSUERS

CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
REFETCH_INTERVAL_SECONDS = 10.0
# Microsoft's and Graph's clocks may disagree a little with ours.
LEEWAY_SECONDS = 60.0
# Verified tokens remembered (by their text) until they expire.
VERIFIED_CACHE_SIZE = 1024
# A tenant id as Entra writes it in issuers: a GUID (a domain name never appears in a token's issuer).
_TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

FetchJson = Callable[[str], Awaitable[dict[str, Any]]]


def openid_configuration_url(authority: str) -> str:
    """Where the authority publishes its OpenID configuration (and so its jwks_uri)."""
    return f"{authority.rstrip('/')}/common/v2.0/.well-known/openid-configuration"


class SigningKeys:
    """The authority's signing keys by key id, fetched on first use and cached.

    ``fetch`` reads a URL's JSON and raises on failure; a failed fetch raises
    AuthorityUnavailableError (the caller answers 503 so Graph retries).
    """

    def __init__(
        self,
        fetch: FetchJson,
        authority: str = DEFAULT_AUTHORITY,
        refetch_interval: float = REFETCH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._authority = authority
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0

    async def key(self, kid: str) -> Any:
        """The public key for ``kid``; raise ValidationTokenError when the authority has none."""
        if kid in self._keys:
            return self._keys[kid]
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._refetch_interval:
            await self._refresh()
        if kid not in self._keys:
            raise ValidationTokenError("unknown signing key")
        return self._keys[kid]

    async def _refresh(self) -> None:
        # One fetch however many requests want it; a request that gives up never cancels it.
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._load())
        await asyncio.shield(self._fetching)

    async def _load(self) -> None:
        import jwt

        self.fetches += 1
        try:
            configuration = await self._fetch(openid_configuration_url(self._authority))
            jwks_uri = configuration.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
                raise ValueError("OpenID configuration without an https jwks_uri")
            document = await self._fetch(jwks_uri)
            keys = jwt.PyJWKSet.from_dict(document).keys
        except Exception as exc:
            # Also counts as a fetch: a failing authority is not asked again at once.
            self._fetched_at = self._clock()
            raise AuthorityUnavailableError(f"signing keys not fetched ({type(exc).__name__})") from exc
        self._keys = {k.key_id: k.key for k in keys if k.key_id}
        self._fetched_at = self._clock()


class ValidationTokenChecker:
    """Checks validation tokens against the authority's keys and this app's identity (app id and tenant)."""

    def __init__(
        self,
        keys: SigningKeys,
        client_id: str,
        tenant: str,
        issuers: Sequence[str] = DEFAULT_ISSUERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._client_id = client_id
        # Filled in once with the app's own tenant, never with the token's unverified ``tid``.
        self._issuers = [issuer.replace("{tenant}", tenant.lower()) for issuer in issuers]
        self._clock = clock
        # Graph sends the same token with batch after batch: one fully checked stays good until it expires.
        self._verified: dict[str, dict[str, Any]] = {}

    async def check(self, token: object) -> dict[str, Any]:
        """The token's claims once every check passes; raise ValidationTokenError naming the first that fails."""
        if not isinstance(token, str) or not token:
            raise ValidationTokenError("not a token")
        known = self._verified.get(token)
        if known is not None:
            if self._clock() > float(known["exp"]) + LEEWAY_SECONDS:
                del self._verified[token]
                raise ValidationTokenError("expired")
            return known
        claims = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # a few tokens per app and tenant are live at a time: rarely reached
        self._verified[token] = claims
        return claims

    async def _verify(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise ValidationTokenError("malformed") from None
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str):
            raise ValidationTokenError("unsupported signature algorithm")
        key = await self._keys.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._client_id,
                issuer=self._issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.InvalidSignatureError:
            raise ValidationTokenError("bad signature") from None
        except jwt.ExpiredSignatureError:
            raise ValidationTokenError("expired") from None
        except jwt.InvalidAudienceError:
            raise ValidationTokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise ValidationTokenError("wrong issuer") from None
        except jwt.InvalidTokenError as exc:
            raise ValidationTokenError(f"invalid ({type(exc).__name__})") from None
        caller = claims.get("azp") if "azp" in claims else claims.get("appid")
        if caller != CHANGE_TRACKING_APP_ID:
            raise ValidationTokenError("not from Graph change tracking")
        return claims

    async def check_all(self, tokens: Iterable[object]) -> None:
        """Check every token; raise on the first that fails (one per app and tenant, so a few)."""
        for token in tokens:
            await self.check(token)


# Multi-tenant: per-tenant checkers kept at once (each caches the few tokens Graph reuses).
MAX_TENANT_CHECKERS = 4096
# Stands for "some tenant" when checking that the settings allow token checks at all.
ZERO_TENANT = "00000000-0000-0000-0000-000000000000"

# A cold key fetch is the only slow step; it must leave room inside Graph's 3 s for the queue write.
CHECK_DEADLINE_SECONDS = 1.5


def batch_tokens(body: bytes, items: Sequence[Mapping[str, Any]]) -> list[object] | None:
    """The batch's ``validationTokens``; [] for a rich batch without them; None for a plain batch."""
    rich = any("encryptedContent" in item for item in items)
    if not rich and b'"validationTokens"' not in body:
        return None
    tokens = json.loads(body).get("validationTokens")  # parsed once already: it is valid JSON
    return list(tokens) if isinstance(tokens, list) else []


class HttpJson:
    """GETs JSON over https with aiohttp (a CA file for a self-signed authority); the session is made on first use."""

    def __init__(self, ca_file: str | None = None, timeout: float = CHECK_DEADLINE_SECONDS) -> None:
        self._ca_file = ca_file
        self._timeout = timeout
        self._session: Any = None

    async def __call__(self, url: str) -> dict[str, Any]:
        import ssl

        import aiohttp

        if self._session is None:
            context = ssl.create_default_context(cafile=self._ca_file) if self._ca_file else None
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(ssl=context) if context else None,
            )
        async with self._session.get(url) as response:
            response.raise_for_status()
            document = await response.json(content_type=None)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return document

    async def close(self) -> None:
        """Close the session, if one was made."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class TokenGate:
    """What the HTTP path asks before storing a rich batch: are all its validation tokens valid, for our tenant?"""

    def __init__(
        self,
        client_id: str | None,
        tenant: str | None,
        authority: str = DEFAULT_AUTHORITY,
        issuers: Sequence[str] = DEFAULT_ISSUERS,
        fetch: FetchJson | None = None,
        ca_file: str | None = None,
        deadline: float = CHECK_DEADLINE_SECONDS,
        multi: bool = False,
    ) -> None:
        self._http = HttpJson(ca_file) if fetch is None else None
        self._keys = SigningKeys(fetch or self._http or HttpJson(ca_file), authority)
        self._tenant = (tenant or "").strip().lower()
        # TENANT_MODE=multi: a checker per tenant a batch names (its issuers are that tenant's), made on first use.
        self._multi = multi
        self._client_id = client_id
        self._issuer_forms = tuple(issuers)
        self._by_tenant: dict[str, ValidationTokenChecker] = {}
        self._unusable = _unusable(client_id, self._tenant if not multi else ZERO_TENANT)
        self._checker = (
            ValidationTokenChecker(self._keys, client_id, self._tenant, issuers)
            if client_id and self._unusable is None
            else None
        )
        self._deadline = deadline

    async def refusal(self, tokens: Sequence[object], items: Iterable[Mapping[str, Any]] = ()) -> str | None:
        """Why the batch must not be stored, or None when every token is valid and every item is our tenant's.

        Raise AuthorityUnavailableError when the keys cannot be had in time (the caller answers 503).
        """
        if not tokens:
            return "resource data without validation tokens"
        if self._multi:
            return await self._tenants_refusal(tokens, items)
        if self._checker is None:
            return self._unusable
        if any(_foreign(item.get("tenantId"), self._tenant) for item in items):
            return "notification of another tenant"
        try:
            await asyncio.wait_for(self._checker.check_all(tokens), self._deadline)
        except ValidationTokenError as exc:
            return exc.reason
        except TimeoutError:
            raise AuthorityUnavailableError("signing keys not fetched in time") from None
        return None

    async def _tenants_refusal(self, tokens: Sequence[object], items: Iterable[Mapping[str, Any]]) -> str | None:
        """Multi-tenant: each token valid for the tenant it names, and each tenant of the batch vouched for by one.

        A token's unverified ``tid`` only picks the checker; the checker then requires that tenant's
        own v1 or v2 issuer, so a token cannot vouch for another tenant than its issuer's. Each item's
        tenantId is then held to its subscription's tenant (notifications.check_items).
        """
        if not self._client_id:
            return self._unusable
        named = {_tenant_of(item.get("tenantId")) for item in items}
        if "" in named:
            return "notification without a tenant id"
        vouched: set[str] = set()
        try:
            async with asyncio.timeout(self._deadline):
                for token in tokens:
                    tenant = _unverified_tenant(token)
                    if tenant not in named:
                        return "token of a tenant the batch does not name"
                    await self._checker_for(tenant).check(token)
                    vouched.add(tenant)
        except ValidationTokenError as exc:
            return exc.reason
        except TimeoutError:
            raise AuthorityUnavailableError("signing keys not fetched in time") from None
        return None if vouched >= named else "a tenant of the batch has no validation token"

    def _checker_for(self, tenant: str) -> ValidationTokenChecker:
        checker = self._by_tenant.get(tenant)
        if checker is None:
            assert self._client_id is not None
            if len(self._by_tenant) >= MAX_TENANT_CHECKERS:
                self._by_tenant.clear()  # each holds a few verified tokens: rebuilt on next use
            checker = ValidationTokenChecker(self._keys, self._client_id, tenant, self._issuer_forms)
            self._by_tenant[tenant] = checker
        return checker

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()


def _tenant_of(value: object) -> str:
    """A tenant id as items write it, lower case; '' when it is not a tenant id."""
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if _TENANT_ID.fullmatch(text) else ""


def _unverified_tenant(token: object) -> str:
    """The ``tid`` a token claims, before any check (it only picks the checker that verifies it)."""
    import jwt

    if not isinstance(token, str):
        return ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return ""
    return _tenant_of(claims.get("tid"))


def _unusable(client_id: str | None, tenant: str) -> str | None:
    """Why no token can be checked with these settings, or None."""
    if not client_id:
        return "GRAPH_CLIENT_ID is not set, so validation tokens cannot be checked"
    if not _TENANT_ID.fullmatch(tenant):
        # Graph's tokens name the tenant by its id; a domain name would match no issuer.
        return "GRAPH_TENANT_ID is not a tenant id (a GUID), so validation tokens cannot be checked"
    return None


def _foreign(tenant_id: object, ours: str) -> bool:
    # An item without tenantId is covered by its token, which names our tenant.
    return tenant_id is not None and (not isinstance(tenant_id, str) or tenant_id.strip().lower() != ours)
