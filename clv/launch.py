"""The console script `clv`: Ctrl-C while the command line is still loading (importing pandas, SciPy, DuckDB takes
a few seconds on a busy machine) exits 130 with `interrupted`, as a Ctrl-C during the run does, instead of a
traceback from inside an import. Nothing has been read or written by then, so there is nothing to clean up."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["main"]


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def main() -> None:
    """Load the command line with Ctrl-C (and SIGTERM) ending the process at once, then run it with the normal
    handlers (`clv.cli.main`: a Ctrl-C during the run marks the step and exits 130)."""
    previous = {s: signal.signal(s, _interrupted_while_loading) for s in (signal.SIGINT, signal.SIGTERM)}
    from clv.cli import main as run

    for number, handler in previous.items():
        signal.signal(number, handler)
    run()


if __name__ == "__main__":  # pragma: no cover
    main()
