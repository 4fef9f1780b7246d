"""What every airgrid command line has in common, written once.

- `new_parser(prog, description)`: an ArgumentParser whose `--help` shows defaults (also in
  every sub-command: sub-parsers inherit the class) and which has `--version`;
- `add_log_level(parser)`: `--log-level` that accepts only the logging levels, any case;
- `@cli_main`: wraps a `main(argv) -> int` so that a closed pipe (`... | head`) ends the
  command quietly instead of with a traceback;
- `json_dumps(obj)`: JSON that never contains `NaN` or `Infinity` (which are not JSON);
  a non-finite float becomes `null`.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, TypeVar

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What a process killed by SIGPIPE reports to its shell (128 + 13).
EXIT_BROKEN_PIPE = 141


def version_string(prog: str) -> str:
    try:
        v = metadata.version("airgrid")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        v = "unknown"
    return f"{prog} (airgrid) {v}"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` where there is a default worth showing (not None/False/[])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "%(default)" in help_text or "default" in help_text.lower():
            return help_text
        if action.default in (None, False, [], argparse.SUPPRESS) or action.required:
            return help_text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return help_text
        return f"{help_text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-parsers show defaults too (they are made of this class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        # argparse shows nothing, not even the default, for an option without help text.
        if (not action.help and action.option_strings and not action.required
                and action.default not in (None, False, [], argparse.SUPPRESS)):
            action.help = "(default: %(default)s)"
        return action


def new_parser(prog: str, description: str | None = None) -> Parser:
    p = Parser(prog=prog, description=description)
    p.add_argument("--version", action="version", version=version_string(prog))
    return p


def _level(text: str) -> str:
    value = text.upper()
    if value not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level; expected one of {', '.join(LOG_LEVELS)}")
    return value


def add_log_level(parser: argparse.ArgumentParser, default: str = "INFO") -> None:
    parser.add_argument("--log-level", type=_level, default=default, metavar="LEVEL",
                        help=f"one of {', '.join(LOG_LEVELS)} (default: {default})")


Main = TypeVar("Main", bound=Callable[..., int])


def cli_main(fn: Main) -> Main:
    """A console script's `main`: a reader that closed the pipe ends us quietly."""

    @functools.wraps(fn)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            code = fn(argv)
            sys.stdout.flush()  # the broken pipe shows here, not at interpreter exit
            return code
        except BrokenPipeError:
            # Python's documented recipe: point stdout at devnull so that the flush at
            # exit does not raise again and print "Exception ignored".
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE

    return wrapper  # type: ignore[return-value]


def finite_or_none(obj: Any) -> Any:
    """`obj` with every NaN/±Infinity float (at any depth) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON: non-finite floats become null; Chinese stays readable."""
    kwargs.setdefault("ensure_ascii", False)
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)
