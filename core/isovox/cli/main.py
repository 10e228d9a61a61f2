"""Entry point of the ``isovox`` command: argument parsing and the error boundary.

Every expected failure reaches the user as one line on stderr and a non-zero
exit status: 2 for bad input, 1 for resources, 130 when cancelled; an
unexpected one prints a one-line internal error (ISOVOX_DEBUG=1 shows the trace).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import CancelledError, InputError, IsovoxError, ResourceError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other input error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import commands, demo, view

    parser = _Parser(prog="isovox", description="Isotropic high-resolution volumes from thick-slice MRI.")
    parser.add_argument("--version", action="version", version=f"isovox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    commands.add_run(sub)
    commands.add_methods(sub)
    commands.add_simulate(sub)
    commands.add_evaluate(sub)
    commands.add_info(sub)
    demo.add_demo(sub)
    view.add_view(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CancelledError as exc:
        print(f"isovox: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("isovox: interrupted", file=sys.stderr)
        return 130
    except InputError as exc:
        print(f"isovox: error: {exc}", file=sys.stderr)
        return 2
    except (ResourceError, MemoryError) as exc:
        text = str(exc) or "ran out of memory; choose a coarser --spacing"
        print(f"isovox: error: {text}", file=sys.stderr)
        return 1
    except IsovoxError as exc:
        print(f"isovox: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"isovox: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("ISOVOX_DEBUG"):
            raise
        print(f"isovox: internal error: {type(exc).__name__}: {exc} (set ISOVOX_DEBUG=1 for details)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
