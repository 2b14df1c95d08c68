"""What ends `make run`: a signal, a closed terminal, a parent that is gone, or a server that died.

Closing a tmux pane or a terminal window hangs the terminal up. The kernel signals only
the session leader, which under `make run` is make: make does not pass SIGHUP on, and
the stack would outlive it holding its ports. So the stack also watches for itself: its
terminal reporting a hang-up and, when started from a terminal, its parent changing (make gone).
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

POLL_SECONDS = 0.2


@dataclass
class Watch:
    """Wait until the stack should stop, and say why."""

    dead: Callable[[], str | None]
    """The first server that exited, described, or None while every one runs."""
    _signal: int | None = field(default=None, init=False)
    _parent: int | None = field(default=None, init=False)
    _terminal: select.poll = field(default_factory=select.poll, init=False)

    def __post_init__(self) -> None:
        terminals = [fd for fd in (0, 1, 2) if _is_terminal(fd)]
        for fd in terminals:
            # No events asked for: poll reports a hang-up (and an error) whatever the mask.
            self._terminal.register(fd, 0)
        if terminals:
            # Started from a terminal (make run): stop with the make that started it. Started in
            # the background by a script, it may outlive its parent on purpose.
            self._parent = os.getppid()

    def catch_signals(self) -> None:
        """Ctrl-C, `kill` and SIGHUP stop the stack (installed before anything starts)."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._caught)

    @property
    def stopping(self) -> bool:
        """True once a signal asked the stack to stop."""
        return self._signal is not None

    def wait(self) -> str | None:
        """Block until the stack should stop: None for a normal stop, else what went wrong."""
        while True:
            if self.stopping or self.hung_up() or self.orphaned():
                return None
            died = self.dead()
            if died is not None:
                return died
            time.sleep(POLL_SECONDS)

    def hung_up(self) -> bool:
        """True once the terminal the stack was started in has gone (its window or pane closed)."""
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in self._terminal.poll(0))

    def orphaned(self) -> bool:
        """True once the process that started the stack from a terminal (make) has gone."""
        return self._parent is not None and os.getppid() != self._parent

    def _caught(self, signum: int, _frame: object) -> None:
        self._signal = signum


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
