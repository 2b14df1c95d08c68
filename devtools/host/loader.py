"""Import the v2 function app and index its functions and bindings."""

from __future__ import annotations

import enum
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

log = logging.getLogger("devtools.host")

IN, OUT, INOUT = 0, 1, 2


@dataclass(frozen=True)
class Binding:
    """One binding of a function, as the decorators declared it."""

    name: str
    type: str
    direction: int
    settings: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        """A binding property by its JSON name (e.g. `queueName`)."""
        return self.settings.get(key, default)


@dataclass(frozen=True)
class FunctionSpec:
    """A function the host can run: its name, callable, trigger and other bindings."""

    name: str
    func: Callable[..., Any]
    trigger: Binding
    bindings: tuple[Binding, ...]
    is_async: bool

    @property
    def outputs(self) -> tuple[Binding, ...]:
        """Output bindings (including `$return`)."""
        return tuple(b for b in self.bindings if b.direction in (OUT, INOUT) and b is not self.trigger)


def _plain(value: Any) -> Any:
    # Decorators store enums (direction, methods, authLevel); keep their values.
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _binding(raw: Mapping[str, Any]) -> Binding:
    settings = {k: _plain(v) for k, v in raw.items()}
    direction = settings.get("direction", IN)
    if isinstance(direction, str):
        direction = {"in": IN, "out": OUT, "inout": INOUT}[direction.lower()]
    return Binding(name=str(settings["name"]), type=str(settings["type"]), direction=int(direction), settings=settings)


def import_app(script_root: Path, module: str = "function_app") -> func.FunctionRegister:
    """Import `function_app` from the script root and return its `app`."""
    root = str(script_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    mod = importlib.import_module(module)
    app = getattr(mod, "app", None)
    if app is None:
        for value in vars(mod).values():
            if isinstance(value, func.FunctionRegister):
                app = value
                break
    if not isinstance(app, func.FunctionRegister):
        raise TypeError(f"{module}.py defines no FunctionApp named 'app'")
    return app


def _disabled(name: str, environ: Mapping[str, str]) -> bool:
    # The host's per-function switch: app setting AzureWebJobs.<name>.Disabled.
    value = environ.get(f"AzureWebJobs.{name}.Disabled", "")
    return value.strip().lower() in ("true", "1")


def index_functions(
    app: func.FunctionRegister,
    only: tuple[str, ...] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[FunctionSpec]:
    """Index the app's functions. `get_functions()` may be called once per app object."""
    env = os.environ if environ is None else environ
    specs: list[FunctionSpec] = []
    for fn in app.get_functions():
        name = str(fn.get_function_name())
        if only is not None and name not in only:
            log.info("function %s skipped: not listed in host.json 'functions'", name)
            continue
        if _disabled(name, env):
            log.info("function %s is disabled (AzureWebJobs.%s.Disabled)", name, name)
            continue
        bindings = tuple(_binding(b.get_dict_repr()) for b in fn.get_bindings())
        trigger = next((b for b in bindings if b.type.lower().endswith("trigger")), None)
        if trigger is None:
            log.warning("function %s has no trigger; skipped", name)
            continue
        user = fn.get_user_function()
        specs.append(
            FunctionSpec(
                name=name,
                func=user,
                trigger=trigger,
                bindings=bindings,
                is_async=inspect.iscoroutinefunction(user),
            )
        )
    return specs
