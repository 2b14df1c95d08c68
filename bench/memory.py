"""A process's resident memory, read from /proc: the host's, sampled while a benchmark runs."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from devtools.stack import LocalStack

from .harness import Background


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``), or its peak so far (``VmHWM``), from /proc; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def host_pid(stack: LocalStack) -> int:
    """The pid of the stack's local host, the one process that runs every function."""
    if stack.host is None or stack.host.process is None:
        raise RuntimeError("the stack has no host running")
    return stack.host.process.pid


class RssSampler(Background):
    """Samples the host's resident memory every ``every`` s; follows the host across a restart.

    ``peak`` is the highest sample; the kernel's own high-water mark (VmHWM) of the
    current process is folded in at each sample, so a spike between samples counts too.
    """

    def __init__(self, stack: LocalStack, every: float = 0.5) -> None:
        super().__init__()
        self._stack = stack
        self._every = every
        self.peak = 0
        self.samples = 0

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await super().__aexit__(kind, error, trace)
        self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        with contextlib.suppress(RuntimeError):  # between a kill and the restart there is no host
            pid = host_pid(self._stack)
            self.peak = max(self.peak, rss_bytes(pid), rss_bytes(pid, "VmHWM"))
            self.samples += 1

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._every)
