"""The function app's functions, read once: azure-functions allows one get_functions() call per app."""

from __future__ import annotations

from typing import Any

import function_app

FUNCTIONS: dict[str, Any] = {f.get_function_name(): f for f in function_app.app.get_functions()}
