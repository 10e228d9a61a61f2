"""Entry point of the ``isovox`` command: argument parsing and the error boundary.

Every expected failure reaches the user as one line on stderr and a non-zero exit status
(:class:`isovox.frontend.ExitCode`: 2 bad input, 1 resources, 130 cancelled); an unexpected
one prints a one-line internal error (ISOVOX_DEBUG=1 shows the trace). Installed front ends
add their own subcommands through the ``isovox.commands`` entry point group (the napari
plugin adds ``isovox view``), so the engine imports no front end.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from importlib.metadata import entry_points
from typing import Optional, Sequence

import numpy as np

from .. import __version__
from ..errors import IsovoxError
from ..frontend import ExitCode, exit_code, user_message

PLUGIN_GROUP = "isovox.commands"
VIEW_HINT = "the viewer comes with the napari plugin: run 'make setup', or pip install -e 'napari_plugin[qt]'"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other input error
        self.exit(ExitCode.BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import batch, commands, demo

    parser = _Parser(prog="isovox", description="Isotropic high-resolution volumes from thick-slice MRI.")
    parser.add_argument("--version", action="version", version=f"isovox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    commands.add_run(sub)
    commands.add_methods(sub)
    commands.add_simulate(sub)
    commands.add_evaluate(sub)
    commands.add_info(sub)
    batch.add_batch(sub)
    demo.add_demo(sub)
    added = add_plugin_commands(sub)
    if "view" not in added:
        _add_missing_view(sub)
    return parser


def add_plugin_commands(sub: argparse._SubParsersAction) -> list[str]:
    """Subcommands that installed front ends declare (``isovox.commands`` entry points)."""
    names = []
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            add = point.load()
        except Exception:  # noqa: BLE001 - a broken plugin must not break the engine's commands
            continue
        add(sub)
        names.append(point.name)
    return names


def _add_missing_view(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="open scans in napari (needs the napari plugin)")
    p.add_argument("files", nargs="*")

    def missing(args: argparse.Namespace) -> int:
        raise IsovoxError(VIEW_HINT)

    p.set_defaults(func=missing)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # libraries' warnings are not the user's business: isovox says what matters in its own lines,
            # and every result is checked for non-finite values before it is written
            warnings.simplefilter("ignore")
            return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        code = exit_code(exc)
        if code == ExitCode.INTERNAL and os.environ.get("ISOVOX_DEBUG"):
            raise
        prefix = "isovox: error: " if code in (ExitCode.BAD_INPUT, ExitCode.RESOURCES) else "isovox: "
        text = user_message(exc)
        if code == ExitCode.INTERNAL:
            text += " (set ISOVOX_DEBUG=1 for details)"
        print(prefix + text, file=sys.stderr)
        return int(code)


if __name__ == "__main__":
    sys.exit(main())
