"""The Microsoft identity platform stand-in: TLS certificate, signing key, tokens, discovery.

azure-identity only talks to an https authority, so these routes run on their own TLS
listener with a self-signed certificate (CN/SAN ``localhost`` and 127.0.0.1) written to
``<state-dir>/ca.pem`` for clients to trust.  Tokens are RS256 JWTs shaped like Entra ID
v1 app-only access tokens for Graph.  Token lifetimes use the real wall clock, not the
simulator's shiftable clock, because azure-identity caches tokens by real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import secrets
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .config import SimConfig
from .rich import ValidationTokenSigner, b64url_uint, self_signed

GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
APP_ROLES = ["Files.ReadWrite.All", "Sites.ReadWrite.All"]


def make_tls_files(state_dir: Path) -> tuple[Path, Path]:
    """Create a self-signed localhost certificate; return (cert/CA pem, key pem) paths."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        self_signed(key, "localhost", now - dt.timedelta(minutes=5), now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        # CA:TRUE so the same file can be trusted as a CA bundle by requests and aiohttp.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = state_dir / "ca.pem", state_dir / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """TLS context for the identity listener."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


class TokenIssuer:
    """Signs and verifies app-only access tokens with a key generated at start-up."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_urlsafe(16)
        # The app's service principal object id: stable per client id, used as creatorId.
        self.service_principal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, config.client_id))
        # Signs rich notifications' validation tokens; its key is published beside the token key (jwks).
        self.validation = ValidationTokenSigner()

    def issue(
        self, audience: str = "https://graph.microsoft.com", certificate: bool = False, tenant: str | None = None
    ) -> str:
        """A signed JWT for Microsoft Graph (or ``audience``), app-only, for ``tenant`` (default: the home tenant);
        appidacr 2 when a certificate signed in."""
        now = int(time.time())
        tenant = tenant or self.config.tenant_id
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.config.token_lifetime_seconds,
            "app_displayname": "graphsim-client",
            "appid": self.config.client_id,
            "azp": self.config.client_id,
            "appidacr": "2" if certificate else "1",
            "idp": f"https://sts.windows.net/{tenant}/",
            "idtyp": "app",
            "oid": self.service_principal_id,
            "sub": self.service_principal_id,
            "roles": APP_ROLES,
            "tid": tenant,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        return self.sign(claims)

    def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` signed with the token key (RS256, its ``kid``): any token Entra ID would issue."""
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    @property
    def public_key(self) -> Any:
        """The token key's public half, to check a token this simulator issued."""
        return self._key.public_key()

    def verify(self, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
        """The claims of a token this simulator issued (for Graph, or ``audiences``); raise ``jwt.PyJWTError``.

        Any tenant's token passes if its issuer is that tenant's (``tid``); whether the tenant
        may call is the tenant registry's question (tenants.py).
        """
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            audience=audiences or list(GRAPH_AUDIENCES),
            options={"require": ["exp", "iat", "aud", "iss"]},
        )
        tenant = claims.get("tid")
        if not isinstance(tenant, str) or not tenant or claims["iss"] != f"https://sts.windows.net/{tenant}/":
            raise jwt.InvalidTokenError("no tenant, or an issuer that is not the tenant's")
        return claims

    def jwks(self, tenant: str | None = None) -> dict[str, Any]:
        """The public signing key as a JWKS document (its ``issuer`` names ``tenant``, default the home tenant)."""
        pub = self._key.public_key().public_numbers()
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": x5t,
                    "n": b64url_uint(pub.n),
                    "e": b64url_uint(pub.e),
                    "issuer": f"https://sts.windows.net/{tenant or self.config.tenant_id}/",
                },
                self.validation.jwk(),
            ]
        }
