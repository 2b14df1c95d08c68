"""The README and docs/ name only what exists, and docs/settings.md documents every setting the app reads.

Settings are checked against the code, not a list: every reader of the environment runs on a
recording mapping with every optional feature on, and the names it looks up are compared with
the tables of docs/settings.md, whose defaults and "yes"/"no" columns are tried on the readers too.
Make targets are parsed from the Makefile, CLI commands and options come from the typer app, and
links between pages must resolve to a file and heading that exist.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "settings.md"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"
Reader = Callable[[Mapping[str, str]], Any]


def readers() -> dict[str, Reader]:
    """Every function that reads the app's environment, by name: the one place that imports them from shared/."""
    from shared import telemetry
    from shared.config.security import token_settings
    from shared.config.settings import Settings, http_auth_level, refusals_flush_seconds
    from shared.config.sinks import parse_sinks

    def telemetry_setting(environ: Mapping[str, str]) -> Any:
        # The connection string is looked up but never answered: configuring Azure Monitor is not for a unit test.
        return telemetry.configure(_Masked(environ, {telemetry.CONNECTION_SETTING}))

    return {
        "Settings.from_env": Settings.from_env,
        "http_auth_level": http_auth_level,
        "refusals_flush_seconds": refusals_flush_seconds,
        "token_settings": token_settings,
        "parse_sinks": parse_sinks,
        "telemetry.configure": telemetry_setting,
    }


def missing_setting_error() -> type[Exception]:
    from shared.errors import MissingSettingError

    return MissingSettingError


# Settings a SINKS entry names by the operator's choice: read through the same mapping, documented as a pattern.
USER_NAMED = ("SINK_WEBHOOK_SECRET", "MIRROR_STORAGE")
# Settings that the app never reads but the docs name, with what reads them: each file must name the setting.
NOT_READ_BY_THE_APP = {
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": ("infra/app/settings.bicep", "the Functions host's own body limit"),
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": ("infra/app/settings.bicep", "the Functions host's telemetry"),
    "LOCALHOST_FUNCTION_KEY": ("devtools/host/__main__.py", "the local host's function key"),
    "BENCH_LARGEDRIVE_SIZES": ("bench/largedrive.py", "the largedrive benchmark's sizes"),
    "GRAPHSIM_CONTROL_URL": ("devtools/simctl.py", "the simulator control URL simctl drives"),
}
_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()
_RICH_ENTRY = {"resource": "users/u1/messages", "changeType": "created,updated", "includeResourceData": True}
_SET_ENTRY = {"resource": "users/{member}/drive/root", "changeType": "updated", "forEachMemberOf": "g1"}
_DRIVE_ENTRY = {"resource": "drives/d1/root", "changeType": "updated"}
_EVENT_GRID_ENTRY = {"resource": "users", "changeType": "updated", "delivery": "eventGrid"}
# Every optional feature on: a secret, rich notifications with a previous certificate, SharePoint lists,
# another account for graph-changes, telemetry, and one sink of each type.
MAXIMAL: dict[str, str] = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_TENANT_ID": "11111111-1111-1111-1111-111111111111",
    "GRAPH_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    "GRAPH_CLIENT_SECRET": "secret",
    "AZURE_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
    "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
    "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com",
    "AZURE_AUTHORITY_CA_FILE": "/tmp/ca.pem",
    "NOTIFICATION_URL": "https://app.example.net/api/notifications?code=k",
    "LIFECYCLE_NOTIFICATION_URL": "https://app.example.net/api/lifecycle?code=k",
    "HTTP_AUTH_LEVEL": "function",
    "GRAPH_SUBSCRIPTIONS": json.dumps([_DRIVE_ENTRY, _RICH_ENTRY, _SET_ENTRY, _EVENT_GRID_ENTRY]),
    "EVENT_GRID_AZURE_SUBSCRIPTION_ID": "55555555-5555-5555-5555-555555555555",
    "EVENT_GRID_RESOURCE_GROUP": "rg-app",
    "EVENT_GRID_PARTNER_TOPIC": "app-topic",
    "EVENT_GRID_LOCATION": "westeurope",
    "INITIAL_SYNC": "full",
    "CALENDAR_WINDOW_DAYS_PAST": "7",
    "CALENDAR_WINDOW_DAYS_AHEAD": "90",
    "RENEW_SCHEDULE": "0 */10 * * * *",
    "SWEEP_AFTER_SECONDS": "600",
    "NOTIFICATION_CERTIFICATE": "/tmp/current.pem",
    "NOTIFICATION_CERTIFICATE_PASSWORD": "pw",
    "NOTIFICATION_CERTIFICATE_ID": "current",
    "NOTIFICATION_CERTIFICATE_PREVIOUS": "/tmp/previous.pem",
    "NOTIFICATION_CERTIFICATE_PREVIOUS_PASSWORD": "pw",
    "NOTIFICATION_CERTIFICATE_PREVIOUS_ID": "previous",
    "VALIDATION_TOKEN_ISSUERS": json.dumps(["https://sts.windows.net/{tenant}/"]),
    "SHAREPOINT_SUBSCRIPTIONS": json.dumps(
        [{"site": "https://contoso.sharepoint.com/sites/a", "list": "44444444-4444-4444-4444-444444444444"}]
    ),
    "SHAREPOINT_NOTIFICATION_URL": "https://app.example.net/api/sharepoint?code=k",
    "SHAREPOINT_CERTIFICATE": "/tmp/sharepoint.pem",
    "SHAREPOINT_CERTIFICATE_PASSWORD": "pw",
    "CHANGES_STORAGE": "UseDevelopmentStorage=true",
    "HEALTH_CACHE_SECONDS": "10",
    "REFUSALS_FLUSH_SECONDS": "5",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "SINKS": json.dumps(
        [
            {"type": "webhook", "url": "https://hooks.example.net/in", "secretSetting": "SINK_WEBHOOK_SECRET"},
            {"type": "blob", "container": "mirror", "connection": "MIRROR_STORAGE"},
            {"type": "teams", "url": "https://teams.example.net/workflow"},
        ]
    ),
    "SINK_WEBHOOK_SECRET": _SECRET,
    "MIRROR_STORAGE": "UseDevelopmentStorage=true",
}
_IDENTITY_FORMS = {
    "AzureWebJobsStorage": {"accountName": "appstore", "credential": "managedidentity", "clientId": "c1"},
    "CHANGES_STORAGE": {
        "accountName": "changestore",
        "queueServiceUri": "https://changestore.queue.core.windows.net",
        "credential": "managedidentity",
        "clientId": "c2",
    },
    "MIRROR_STORAGE": {"blobServiceUri": "https://mirror.blob.core.windows.net", "credential": "managedidentity"},
}
# The same, with every storage account reached by identity instead of a connection string.
MAXIMAL_BY_IDENTITY: dict[str, str] = {
    **{key: value for key, value in MAXIMAL.items() if key not in _IDENTITY_FORMS},
    **{f"{setting}__{part}": value for setting, parts in _IDENTITY_FORMS.items() for part, value in parts.items()},
}
ENVIRONMENTS = {"connection strings": MAXIMAL, "identity": MAXIMAL_BY_IDENTITY}


class _Recorder(Mapping[str, str]):
    """A mapping that remembers every key looked up (get, [], in); iterating reads no value."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def items(self) -> Any:
        return self._values.items()


class _Masked(Mapping[str, str]):
    """Passes lookups on (so they are recorded) but answers the masked keys as absent."""

    def __init__(self, inner: Mapping[str, str], masked: set[str]) -> None:
        self._inner = inner
        self._masked = masked

    def __getitem__(self, key: str) -> str:
        value = self._inner[key]
        if key in self._masked:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._inner.get(key, default)
        return default if key in self._masked else value

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._inner if key not in self._masked)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@cache
def names_read() -> dict[str, frozenset[str]]:
    """For each reader, the names it looks up in either maximal environment."""
    found: dict[str, frozenset[str]] = {}
    for name, reader in readers().items():
        seen: set[str] = set()
        for environment in ENVIRONMENTS.values():
            recorder = _Recorder(environment)
            reader(recorder)
            seen |= recorder.read
        found[name] = frozenset(seen)
    return found


def app_settings_read() -> set[str]:
    every = set().union(*names_read().values())
    return {name for name in every if not name.startswith(USER_NAMED)}


# --- reading the pages -------------------------------------------------------------------------

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`]+)`")
SETTING_LIKE = re.compile(
    r"(?<![\w.$/<])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?:__[A-Za-z]+)?|AzureWebJobsStorage(?:__[A-Za-z]+)?)(?![\w])"
)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_snippets(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks (comments after ' #' dropped), whitespace normalised."""
    snippets = [line.split(" #")[0] for block in FENCE.findall(text) for line in block.splitlines()]
    prose = FENCE.sub("", text)
    snippets += INLINE.findall(prose)
    return [" ".join(snippet.split()) for snippet in snippets if snippet.strip()]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of every row of the tables whose header line is ``header``."""
    rows: list[list[str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != header:
            continue
        for row in lines[index + 2 :]:
            if not row.startswith("|"):
                break
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]])
    return rows


SETTINGS_HEADER = "| Setting | Default | Required | Meaning |"
NOT_READ_HEADER = "| Setting | Read by | Meaning |"


def documented_settings() -> dict[str, tuple[str, str]]:
    """docs/settings.md's app settings: name -> (default cell, required cell). One name per row."""
    documented: dict[str, tuple[str, str]] = {}
    for cells in table_rows(SETTINGS_DOC.read_text(), SETTINGS_HEADER):
        name = re.fullmatch(r"`([^`]+)`", cells[0])
        assert name, f"settings.md: a row must name one setting in code: {cells[0]!r}"
        assert name.group(1) not in documented, f"settings.md documents {name.group(1)} twice"
        documented[name.group(1)] = (cells[1], cells[2])
    return documented


def azd_names() -> set[str]:
    """The azd environment values the templates read or write (infra/main.parameters.json, main.bicep outputs)."""
    parameters = (ROOT / "infra" / "main.parameters.json").read_text()
    outputs = (ROOT / "infra" / "main.bicep").read_text()
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", parameters)) | set(
        re.findall(r"^output ([A-Z][A-Z0-9_]*) ", outputs, re.MULTILINE)
    )


# --- settings ------------------------------------------------------------------------------------


def test_every_setting_the_app_reads_is_documented() -> None:
    read = app_settings_read()
    assert {"GRAPH_TENANT_ID", "SINKS", "APPLICATIONINSIGHTS_CONNECTION_STRING", "HTTP_AUTH_LEVEL"} <= read
    assert sorted(read - set(documented_settings())) == []


def test_the_sinks_read_settings_named_by_their_entries() -> None:
    every = set().union(*names_read().values())
    assert {"SINK_WEBHOOK_SECRET", "MIRROR_STORAGE", "MIRROR_STORAGE__blobServiceUri"} <= every


def test_every_documented_setting_is_read_by_the_app() -> None:
    assert sorted(set(documented_settings()) - app_settings_read()) == []


def test_the_settings_not_read_by_the_app_are_the_listed_ones_and_exist_where_said() -> None:
    rows = table_rows(SETTINGS_DOC.read_text(), NOT_READ_HEADER)
    named = {cells[0].strip("`") for cells in rows}
    assert named == set(NOT_READ_BY_THE_APP)
    assert sorted(named & app_settings_read()) == []
    missing = [name for name, (path, _) in NOT_READ_BY_THE_APP.items() if name not in (ROOT / path).read_text()]
    assert missing == []


@pytest.mark.parametrize("page", pages(), ids=lambda path: path.name)
def test_every_setting_a_page_names_exists(page: Path) -> None:
    known = app_settings_read() | set(NOT_READ_BY_THE_APP) | azd_names()
    named = set(SETTING_LIKE.findall(page.read_text()))
    assert sorted(named - known) == []


def test_each_documented_default_is_what_the_app_uses_when_the_setting_is_unset() -> None:
    checked = []
    for name, (default_cell, _) in documented_settings().items():
        literal = re.fullmatch(r"`([^`]*)`", default_cell)
        if literal is None:
            continue
        using = [reader for key, reader in readers().items() if name in names_read()[key]]
        assert using, f"no reader reads {name}"
        base = {key: value for key, value in MAXIMAL.items() if key != name}
        for reader in using:
            assert reader(base) == reader({**base, name: literal.group(1)}), f"{name}: documented default {literal[0]}"
        checked.append(name)
    assert {"RENEW_SCHEDULE", "SWEEP_AFTER_SECONDS", "HTTP_AUTH_LEVEL", "VALIDATION_TOKEN_ISSUERS"} <= set(checked)


def _required(cell: str) -> bool | None:
    """True for "yes", False for "no" (each possibly followed by a remark), None for a condition."""
    word = re.match(r"(yes|no)\b", cell)
    return None if word is None else word.group(1) == "yes"


def test_the_required_settings_are_enough_and_each_is_needed() -> None:
    required = [name for name, (_, cell) in documented_settings().items() if _required(cell)]
    assert {"GRAPH_TENANT_ID", "NOTIFICATION_URL", "AzureWebJobsStorage"} <= set(required)
    minimal = {name: MAXIMAL[name] for name in required}
    for reader in readers().values():
        reader(minimal)
    for name in required:
        with pytest.raises(missing_setting_error()) as raised:
            readers()["Settings.from_env"]({key: value for key, value in minimal.items() if key != name})
        assert getattr(raised.value, "key", None) == name


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=list(ENVIRONMENTS))
def test_each_setting_marked_no_can_be_left_out_with_every_feature_on(environment: dict[str, str]) -> None:
    optional = [name for name, (_, cell) in documented_settings().items() if _required(cell) is False]
    assert len(optional) > 20
    for name in optional:
        without = {key: value for key, value in environment.items() if key != name}
        for reader in readers().values():
            reader(without)


# --- make targets, CLI commands, paths, links ----------------------------------------------------


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def named_make_targets(text: str) -> set[str]:
    return {
        match.group(1)
        for snippet in code_snippets(text)
        for match in re.finditer(r"(?:^|[\s;&|(])make\s+([A-Za-z][\w-]*)", snippet)
    }


@pytest.mark.parametrize("page", pages(), ids=lambda path: path.name)
def test_every_make_target_a_page_names_exists(page: Path) -> None:
    assert sorted(named_make_targets(page.read_text()) - make_targets()) == []


def cli_problems(text: str) -> list[str]:
    """Each ``graphhooks ...`` command line whose command, subcommand or option the typer app does not have."""
    import typer

    from graphhooks.cli import app

    root = typer.main.get_command(app)
    problems = []
    for snippet in code_snippets(text):
        for match in re.finditer(r"(?:^|[\s/])graphhooks((?:\s+[^\s|#;&]+)*)", snippet):
            command: Any = root
            tokens = match.group(1).split()
            while tokens:
                token = tokens.pop(0)
                if token.startswith("-"):
                    options = {opt: p for p in command.params for opt in [*p.opts, *p.secondary_opts]}
                    option = options.get(token.split("=")[0])
                    if option is None and token != "--help":
                        problems.append(f"{snippet!r}: no option {token}")
                        break
                    if option is not None and not option.is_flag and "=" not in token and tokens:
                        tokens.pop(0)
                elif hasattr(command, "commands"):
                    sub = command.commands.get(token)
                    if sub is None:
                        problems.append(f"{snippet!r}: no command {token}")
                        break
                    command = sub
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda path: path.name)
def test_every_cli_command_a_page_names_exists(page: Path) -> None:
    assert cli_problems(page.read_text()) == []


PATH_SPAN = re.compile(r"(?:\.\./)?((?:shared|graphhooks|devtools|tests|bench|infra|scripts|schemas|docs)/[\w./*-]*)")


@pytest.mark.parametrize("page", pages(), ids=lambda path: path.name)
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    prose = FENCE.sub("", page.read_text())
    spans = {match.group(1) for snippet in INLINE.findall(prose) if (match := PATH_SPAN.fullmatch(snippet))}
    assert sorted(path for path in spans if not any(ROOT.glob(path.rstrip("/")))) == []


def test_module_paths_are_named_only_in_the_architecture_page() -> None:
    scattered = [
        (page.name, snippet)
        for page in pages()
        if page != ARCHITECTURE_DOC
        for snippet in code_snippets(page.read_text())
        if re.search(r"(?<![\w/.])shared/\w", snippet)
    ]
    assert scattered == []


def test_the_module_map_names_modules_that_exist() -> None:
    rows = table_rows(ARCHITECTURE_DOC.read_text(), "| Layer | Module | What it is |")
    assert len(rows) > 20
    missing = []
    for _layer, modules, what in rows:
        paths = INLINE.findall(modules)
        missing += [path for path in paths if not (ROOT / path).exists()]
        bases = [ROOT / path for path in paths if path.endswith("/")]
        for name in INLINE.findall(what):
            if re.fullmatch(r"\w+(?:\.py|/)", name) and not any(any(base.rglob(name.rstrip("/"))) for base in bases):
                missing.append(f"{modules}: {name}")
    assert missing == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        base = slug(heading)
        anchor, count = base, 0
        while anchor in found:
            count += 1
            anchor = f"{base}-{count}"
        found.add(anchor)
    return found


def broken_links(page: Path) -> list[str]:
    prose = INLINE.sub("", FENCE.sub("", page.read_text()))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists() or (anchor and anchor not in anchors(destination)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda path: path.name)
def test_every_link_between_pages_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checks_catch_wrong_names() -> None:
    """Each check above fails on a deliberately wrong name: none of them passes by matching nothing."""
    assert named_make_targets("run `make deploy-now` first") - make_targets() == {"deploy-now"}
    assert cli_problems("```sh\ngraphhooks poison replay --everything\n```")
    assert cli_problems("`graphhooks subscriptions refresh <id>`")
    assert cli_problems("`graphhooks queues list`")
    assert not cli_problems("`graphhooks --settings x.json poison replay graph-notifications-poison --yes`")
    assert set(SETTING_LIKE.findall("set `GRAPH_TENANT` and `CHANGES_STORAGE__accountNme`")) - app_settings_read() == {
        "GRAPH_TENANT",
        "CHANGES_STORAGE__accountNme",
    }
    page = ROOT / "docs" / "settings.md"
    assert slug("Managed identity: which setting does what") in anchors(page)
    assert "no-such-heading" not in anchors(page)
