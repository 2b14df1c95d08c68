"""Call user functions as the Python worker does: async on the host loop, sync in a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import threading
import time
import typing
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import azure.functions as func

from devtools.host.loader import FunctionSpec

log = logging.getLogger("devtools.host")
invocation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("invocation_id", default="-")

T = TypeVar("T")


class OutValue(func.Out[T], Generic[T]):
    """The object passed for an output binding argument (`func.Out[...]`)."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


class LocalContext(func.Context):
    """The `context` argument: invocation id, function name and directory."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class OutputSink(Protocol):
    """Where output binding values go once an invocation succeeded."""

    async def flush(self, spec: FunctionSpec, outputs: Mapping[str, Any]) -> None: ...


@dataclass
class InvocationResult:
    """What one invocation produced."""

    invocation_id: str
    succeeded: bool
    return_value: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    duration_ms: float = 0.0


def _annotations(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable hints just mean "no conversion"
        return dict(getattr(fn, "__annotations__", {}))


class Invoker:
    """Runs invocations and tracks the ones in flight, for a graceful shutdown."""

    def __init__(self, sink: OutputSink, script_root: str, max_workers: int | None = None) -> None:
        workers = max_workers or int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or 0) or None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="func-worker")
        self._sink = sink
        self._script_root = script_root
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        """Invocations currently running."""
        return len(self._in_flight)

    def _arguments(
        self, spec: FunctionSpec, trigger_value: Any, invocation_id: str
    ) -> tuple[dict[str, Any], dict[str, OutValue[Any]]]:
        params = inspect.signature(spec.func).parameters
        hints = _annotations(spec.func)
        kwargs: dict[str, Any] = {}
        outs: dict[str, OutValue[Any]] = {}
        for binding in spec.bindings:
            if binding.name == "$return" or binding.name not in params:
                continue
            if binding is spec.trigger:
                kwargs[binding.name] = _convert_trigger(trigger_value, hints.get(binding.name))
            elif binding.direction == 0:
                log.warning(
                    "%s: input binding %s (%s) is not supported locally; passing None",
                    spec.name,
                    binding.name,
                    binding.type,
                )
                kwargs[binding.name] = None
            else:
                outs[binding.name] = kwargs[binding.name] = OutValue()
        if "context" in params and "context" not in kwargs:
            kwargs["context"] = LocalContext(invocation_id, spec.name, self._script_root)
        return kwargs, outs

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> InvocationResult:
        """Run one invocation, flush its outputs on success, and log its outcome.

        The invocation runs in its own task, shielded: cancelling the caller (a timer
        loop, a client that hung up) does not cut a running function short.
        """
        task = asyncio.ensure_future(self._invoke(spec, trigger_value, reason))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    async def _invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> InvocationResult:
        invocation_id = str(uuid.uuid4())
        token = invocation_id_var.set(invocation_id)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
        started = time.perf_counter()
        result = InvocationResult(invocation_id=invocation_id, succeeded=False)
        try:
            kwargs, outs = self._arguments(spec, trigger_value, invocation_id)
            if spec.is_async:
                value = await spec.func(**kwargs)
            else:
                ctx = contextvars.copy_context()
                call = functools.partial(ctx.run, spec.func, **kwargs)
                value = await asyncio.get_running_loop().run_in_executor(self._pool, call)
            result.return_value = value
            result.outputs = {name: out.get() for name, out in outs.items() if out.get() is not None}
            if value is not None:
                result.outputs["$return"] = value
            await self._sink.flush(spec, result.outputs)
            result.succeeded = True
        except asyncio.CancelledError as exc:
            result.error = exc
            log.error("Function 'Functions.%s' was cancelled (Id=%s)", spec.name, invocation_id)
            raise
        except Exception as exc:  # any user error fails the invocation, as in the host
            result.error = exc
            log.error(
                "Exception while executing function: Functions.%s (Id=%s)", spec.name, invocation_id, exc_info=exc
            )
        finally:
            result.duration_ms = (time.perf_counter() - started) * 1000
            outcome = "Succeeded" if result.succeeded else "Failed"
            log.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
                spec.name,
                outcome,
                invocation_id,
                result.duration_ms,
            )
            invocation_id_var.reset(token)
        return result

    async def drain(self, grace: float) -> bool:
        """Wait for in-flight invocations; True when all finished within `grace` seconds."""
        pending = set(self._in_flight)
        if not pending:
            return True
        log.info("waiting up to %.0fs for %d in-flight invocation(s)", grace, len(pending))
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        return not still

    def close(self) -> None:
        """Stop the thread pool without waiting for stuck sync functions."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _convert_trigger(value: Any, annotation: Any) -> Any:
    # The worker converts a queue message to the annotated type; str and bytes are common.
    if isinstance(value, func.QueueMessage):
        if annotation is str:
            return value.get_body().decode("utf-8")
        if annotation is bytes:
            return value.get_body()
    return value
