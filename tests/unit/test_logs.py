"""No delta, skip or validation token, key or signature reaches a log line, whatever logs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from shared.logs import REDACTED, redact
from tests.conftest import ROOT

# Graph's documented link forms: drive delta (``?token=``, and the ``delta(token='…')`` function),
# directory and Outlook delta (``$deltatoken``, ``$skiptoken``), the validation handshake.
SECRET_URLS = [
    "https://graph.microsoft.com/v1.0/drives/b!d/root/delta?token=MzslMjM0OyUyMzE7MzsyM2Yw",
    "https://graph.microsoft.com/v1.0/me/drive/root/delta(token='1230919asd190410jlka')",
    "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=oEcOySpF_hWYmTIUZBOIfPzcwisr_rPe8o9M54L45qEXQGmvQC6T2dbL",
    "https://graph.microsoft.com/v1.0/users/delta?%24skiptoken=pqwSUjGYvb3jQpbwVAwEL7yuI3dU1LecfkkfLPtnIjs",
    "https://graph.microsoft.com/v1.0/me/mailFolders/AAMk/messages/delta?$skiptoken=X%2Bab&$top=10",
    "http://127.0.0.1:7071/api/notifications?validationToken=Validation%3a+Testing%3a+client+to+service",
    "https://app.azurewebsites.net/api/notifications?code=k3yK3yK3y==",
    "https://acct.blob.core.windows.net/mirror/a.txt?sv=2024-08-04&sig=c2lnbmF0dXJl%3D&se=2030-01-01",
    # An admin consent's reply: its signed state is one-use, but worth nothing in a log.
    "https://app.azurewebsites.net/api/consent?tenant=1111&admin_consent=True&state=eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
]
SECRETS = [
    "MzslMjM0OyUyMzE7MzsyM2Yw",
    "1230919asd190410jlka",
    "oEcOySpF_hWYmTIUZBOIfPzcwisr_rPe8o9M54L45qEXQGmvQC6T2dbL",
    "pqwSUjGYvb3jQpbwVAwEL7yuI3dU1LecfkkfLPtnIjs",
    "X%2Bab",
    "Validation%3a",
    "k3yK3yK3y",
    "c2lnbmF0dXJl",
    "eyJhbGciOiJIUzI1NiJ9",
]


@pytest.mark.parametrize(("url", "secret"), list(zip(SECRET_URLS, SECRETS, strict=True)))
def test_redact_removes_the_secret_and_keeps_the_rest(url: str, secret: str) -> None:
    text = redact(f'HTTP Request: GET {url} "HTTP/1.1 200 OK"')
    assert secret not in text
    assert REDACTED in text
    assert text.startswith("HTTP Request: GET http") and text.endswith('"HTTP/1.1 200 OK"')


def test_redact_leaves_ordinary_fields_alone() -> None:
    line = "delta.run subscription_id=0f6e8a2c events=3 code=InvalidRequest status=400 $top=10"
    assert redact(line) == line
    graph_error = '{"code": "Forbidden", "clientState": "s3cr3t"}'
    assert redact(graph_error) == f'{{"code": "Forbidden", "clientState": "{REDACTED}"}}'


# Run in a fresh interpreter: logging's set-up is process-wide. The local host's set-up, then the
# app as the host imports it, then a handler added later (Azure Monitor's exporter adds its own).
_SCRIPT = """
import io, logging, sys
from devtools.host.__main__ import configure_logging
configure_logging("DEBUG")
import function_app  # noqa: F401 - what the host (and the Functions worker) imports first
import httpx

late = io.StringIO()
logging.getLogger().addHandler(logging.StreamHandler(late))
httpx_log = logging.getLogger("httpx")
assert httpx_log.getEffectiveLevel() == logging.WARNING, "httpx must be kept to warnings"
httpx_log.setLevel(logging.DEBUG)  # even when someone turns it up, the tokens stay out
urls = {urls!r}
for url in urls:
    # Exactly as httpx's client logs each response: the URL is an httpx.URL, not a str.
    httpx_log.info('HTTP Request: %s %s "%s %d %s"', "GET", httpx.URL(url), "HTTP/1.1", 200, "OK")
    httpx_log.debug('HTTP Request: %s %s "%s %d %s"', "GET", httpx.URL(url), "HTTP/1.1", 200, "OK")
    pool = logging.getLogger("urllib3.connectionpool")
    pool.debug('%s://%s:%s "%s %s %s" %s %s', "https", "h", 443, "GET", url, "HTTP/1.1", 200, 5)
    logging.getLogger("aiohttp.access").info("127.0.0.1 \\"POST %s HTTP/1.1\\" 202", url)
    try:
        raise RuntimeError(f"GET {{url}} failed")
    except RuntimeError as exc:
        logging.getLogger("shared.graph").exception("delta failed: %s", exc)
sys.stdout.write("LATE:" + late.getvalue())
"""


def test_no_token_in_any_log_line_of_the_app_at_debug() -> None:
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT.format(urls=SECRET_URLS))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    host_output, late_output = run.stderr, run.stdout
    assert host_output.count("HTTP Request: GET https://graph.microsoft.com") == 2 * 5  # the lines are there
    assert late_output.count("delta failed") == len(SECRET_URLS)
    for secret in SECRETS:
        assert secret not in host_output
        assert secret not in late_output
