"""The command-line face of the engine: ``shieldwright SUBCOMMAND``; without one, the wizard.

``shieldwright [IMAGE]`` opens the wizard (on IMAGE, an existing file); a word that is neither a subcommand
nor a file is refused as an unknown command (with the closest ones), and without a display the wizard is
not started: one line says why (exit 69) instead of Qt aborting the process.

A :class:`ShieldwrightError` prints one line ``shieldwright: error: MESSAGE (HINT)`` and exits with its
code. SIGTERM and SIGHUP raise :class:`Interrupted` (a KeyboardInterrupt) so they clean up like Ctrl-C
and exit 128 + the signal. Any other exception prints one line too; its traceback goes to the log file.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

from app import __version__
from app.commands import COMMAND_MODULES
from app.errors import CancelledError, ShieldwrightError
from app.logfile import append_traceback

log = logging.getLogger(__name__)

#: Signals that stop a command the way Ctrl-C does (SIGINT keeps Python's own handler).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: Exit code of an unexpected error that is most likely the input's doing (as for bad input).
EXIT_INPUT = 2
#: Exit code of an unexpected error of any other kind (a bug).
EXIT_INTERNAL = 70  # EX_SOFTWARE, sysexits.h
#: Exit code when the wizard has no display to open a window on.
EXIT_NO_DISPLAY = 69  # EX_UNAVAILABLE, sysexits.h


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread exactly where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[list[int]]:
    """While inside: SIGTERM and SIGHUP raise :class:`Interrupted`; yields the signals received so far.

    Only in the main thread (where Python runs signal handlers), only for signals at their default action
    (an ignored SIGHUP under ``nohup`` stays ignored), and the previous handlers are restored on exit.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise Interrupted(signum)

    previous = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shieldwright",
        description="Build signed, encrypted template disks for Shielded / Confidential VMs. "
        "Without a subcommand, opens the wizard.",
    )
    parser.add_argument("--version", action="version", version=f"shieldwright {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(sub)
    return parser


def subcommands() -> list[str]:
    """Names of all subcommands (a first positional argument that is none of these is an image file)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def main(argv: list[str]) -> int:
    positional = [a for a in argv if not a.startswith("-")]
    asks_parser = any(a in ("-h", "--help", "--version") for a in argv)
    commands = subcommands()
    if not asks_parser and (not positional or positional[0] not in commands):
        # No subcommand: the wizard, optionally opened on one image (an existing file).
        refused = wizard_arguments_problem(argv, positional, commands)
        if refused is not None:
            build_parser().error(refused)  # usage + "shieldwright: error: ...", exit 2
        no_display = display_problem(os.environ)
        if no_display is not None:
            _say(f"shieldwright: error: {no_display.one_line()}")
            return EXIT_NO_DISPLAY
        # lazy: the one way in to Qt (PySide6); every subcommand and `--help` run without it
        from app.gui.application import run_wizard

        return run_wizard(positional[0] if positional else None, debug="--debug" in argv)

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.command is None:
        build_parser().print_help()
        return 2
    with stop_signals_interrupt() as received:
        try:
            return run_command(args, received)
        except KeyboardInterrupt:  # a second signal while the first one's outcome was being reported
            return 128 + (received[-1] if received else signal.SIGINT)


def wizard_arguments_problem(argv: list[str], positional: list[str], commands: list[str]) -> str | None:
    """Why ``argv`` (no subcommand in it) cannot open the wizard, as an argparse error message; else None.

    The wizard takes ``--debug`` and at most one existing file. A word that is neither a command nor a file
    is a mistyped command (say so, with the closest commands), never an image name for the wizard to fail on.
    """
    options = [a for a in argv if a.startswith("-") and a != "--debug"]
    if options:
        return f"unrecognized arguments: {' '.join(options)}"
    if not positional:
        return None
    word = positional[0]
    if not os.path.exists(word):
        if os.sep in word or "." in word:  # spelled like a path: a missing image, not a command
            return (
                f"no such file: {word!r} (give an existing disk image, or a command: see shieldwright --help)"
            )
        close = difflib.get_close_matches(word, commands, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see shieldwright --help"
        return f"unknown command {word!r} ({hint})"
    if len(positional) > 1:
        return f"unrecognized arguments: {' '.join(positional[1:])}"
    return None


#: Values of QT_QPA_PLATFORM that need a display server, and the variable that names it.
_DISPLAY_PLATFORMS = {"xcb": ("DISPLAY",), "wayland": ("WAYLAND_DISPLAY",)}


def display_problem(environ: Mapping[str, str]) -> ShieldwrightError | None:
    """Why the wizard has no display to open a window on (Qt would abort the process), or None.

    Without QT_QPA_PLATFORM, Qt needs an X (``DISPLAY``) or Wayland (``WAYLAND_DISPLAY``) display; a
    platform chosen explicitly (``offscreen``, ``vnc``, ``eglfs``, ``xcb``, ...) is taken at its word, except
    that ``xcb`` and ``wayland*`` need their display variable too. A display that is named but does not
    answer is Qt's to report (the wizard turns that into one line as well).
    """
    platforms = [p.split(":")[0].strip() for p in environ.get("QT_QPA_PLATFORM", "").split(";") if p.strip()]
    needs: set[str] = set()
    for platform in platforms or ["xcb", "wayland"]:
        kind = "wayland" if platform.startswith("wayland") else platform
        if kind not in _DISPLAY_PLATFORMS:
            return None  # a platform that needs no display server (offscreen, vnc, eglfs, linuxfb, ...)
        needs.update(_DISPLAY_PLATFORMS[kind])
    if any(environ.get(name) for name in needs):
        return None
    unset = " and ".join(sorted(needs, reverse=True))
    return ShieldwrightError(
        f"no display to open the wizard on: {unset} {'are' if len(needs) > 1 else 'is'} not set",
        "run it in a desktop session or under xvfb-run, or use a subcommand: shieldwright --help",
    )


def run_command(args: argparse.Namespace, received: list[int]) -> int:
    """Run the subcommand; every way it can end becomes an exit code and at most one line on stderr."""
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except ShieldwrightError as exc:
        _say(f"shieldwright: error: {exc.one_line()}")
        if isinstance(exc, CancelledError) and received:
            return 128 + received[-1]
        return exc.exit_code
    except KeyboardInterrupt:
        signum = received[-1] if received else signal.SIGINT
        _say("shieldwright: cancelled" + (f" ({signal.Signals(signum).name})" if received else ""))
        return 128 + signum
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): nothing left to say to it, and nothing to flush.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # Exception, and pyo3's PanicException (a BaseException)
        message, code = unexpected_error(exc, args.command)
        _say(f"shieldwright: error: {message.one_line()}")
        return code


def unexpected_error(exc: BaseException, command: str) -> tuple[ShieldwrightError, int]:
    """The one-line error and exit code for an exception no engine code translated; its traceback goes to
    the log file (and with ``--debug`` to stderr), never to the terminal by default."""
    log.debug("unexpected error in `shieldwright %s`", command, exc_info=exc)
    path = append_traceback(exc, f"`shieldwright {command}` failed")
    where = f"details in {path}" if path is not None else "the log file could not be written"
    message, hint, code = _describe(exc)
    return ShieldwrightError(message, f"{hint}; {where}"), code


def _describe(exc: BaseException) -> tuple[str, str, int]:
    """(message, hint, exit code) for an untranslated exception, by kind."""
    name = type(exc).__name__
    suspect = "the input may be corrupt or hostile"
    if isinstance(exc, MemoryError):
        return "not enough memory", f"{suspect} (a size beyond what it holds)", EXIT_INPUT
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to process", suspect, EXIT_INPUT
    if name == "PanicException":  # pyo3_runtime.PanicException: not importable, not an Exception
        return ("a cryptographic library refused its parameters (panic)",
                f"{suspect} (e.g. a LUKS2 header's KDF cost)", EXIT_INPUT)  # fmt: skip
    if isinstance(exc, ValueError | OverflowError):
        return f"a value in the input cannot be processed ({name})", suspect, EXIT_INPUT
    if isinstance(exc, OSError):
        return (f"cannot continue: {exc.strerror or name}", "check the paths, permissions and free space",
                EXIT_INPUT)  # fmt: skip
    return f"internal error ({name})", "this is a bug, please report it", EXIT_INTERNAL


def _say(line: str) -> None:
    """Print to stderr; a stderr that is gone (SIGHUP closed the terminal) must not raise a second error."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
