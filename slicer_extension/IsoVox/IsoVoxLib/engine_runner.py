"""Run the engine's command line with progress as plain lines, for the Slicer module.

``PythonSlicer engine_runner.py run SCAN... -o OUT`` is ``isovox run`` (same parser,
same one-line errors and exit codes) except that progress goes to stderr as lines
``isovox-progress 0.4200 message`` instead of a terminal progress bar, which draws
nothing when stderr is a pipe. It imports nothing from the module, so it runs as a
script in a separate process.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

PROGRESS_PREFIX = "isovox-progress"


def line_progress(quiet: bool, label: str) -> tuple[object, Callable[[], None]]:
    """A Task printing a progress line whenever the fraction moves by 0.5 % or more."""
    from isovox.progress import Task

    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.005 or fraction >= 1.0:
            last[0] = fraction
            print(f"{PROGRESS_PREFIX} {fraction:.4f} {label}: {message}".rstrip(": "), file=sys.stderr, flush=True)

    return Task(report), lambda: None


def main(argv: Optional[Sequence[str]] = None) -> int:
    from isovox.cli import commands
    from isovox.cli.main import main as isovox_main

    commands.progress_task = line_progress
    return isovox_main(argv)


if __name__ == "__main__":
    sys.exit(main())
