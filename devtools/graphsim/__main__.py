"""``python -m devtools.graphsim``: run the simulator until SIGINT/SIGTERM.

Prints one JSON line with URLs and credentials to stdout on start-up; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from .config import parse_args
from .server import start


async def _main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    handle = await start(config)
    sys.stdout.write(json.dumps(handle.info()) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await handle.close()
        logging.getLogger("graphsim").info("stopped")


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_main(argv))


if __name__ == "__main__":
    main()
