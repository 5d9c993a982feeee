"""`python -m tinytl COMMAND ...`: a thin argparse layer over the library, one module per command."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from tinytl.errors import Terminated, TinyTLError

# Each module defines add_parser(subparsers) and sets the subcommand's `func(args) -> int`.
COMMAND_MODULES = ("tinytl.cli.memory_cmd", "tinytl.cli.measure_cmd", "tinytl.cli.finetune_cmd",
                   "tinytl.cli.pretrain_cmd", "tinytl.cli.supernet_cmd", "tinytl.cli.search_cmd",
                   "tinytl.cli.collect_cmd",
                   "tinytl.cli.evaluate_cmd")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help names each flag's default once: not where the help text already says it, nor for an unset (None) or
    boolean-switch default; lists are shown as typed (48,64,80,96)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or not action.option_strings):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})" if text else f"default: {shown}"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input as one line on stderr and exit code 2 (no usage dump), and shows every
    flag's default in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m tinytl",
                           description="TinyTL explorer: training memory of on-device transfer learning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser,
                                metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for bad input, found by argparse or by the library)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # progress of long commands
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse already printed the one line (or the help)
        return int(done.code or 0)
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return args.func(args)
    except TinyTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Terminated:  # the shell's status for a SIGTERM death, after the run store was told
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's interrupted status (a run is recorded cancelled)
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        sys.stderr.close()
        return 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
