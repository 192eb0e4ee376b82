"""The ``fedkb`` command line: the parser, signals and the one place errors meant for the user are
printed. Each command lives in its ``fedkb/cmd_*.py``; heavy libraries are imported inside the
commands that need them, so ``fedkb --help`` and the keyboard never wait for TensorFlow."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

# Must be set before TensorFlow is imported anywhere in this process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.errors import FedkbError
from common.layout import ENV_VAR, Home, resolve_home


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedkb",
        description="A federated next-word-prediction keyboard: devices keep their typing, "
                    "TensorFlow Federated trains on it where it lies.",
    )
    parser.add_argument("--home",
                        help=f"where devices and server state live (default: ${ENV_VAR} or the user data directory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from fedkb import (  # light: heavy imports live inside the commands
        cmd_audit,
        cmd_demo,
        cmd_eval,
        cmd_keyboard,
        cmd_live,
        cmd_ngrams,
        cmd_population,
        cmd_pretrain,
        cmd_tokenizer,
        cmd_train,
        cmd_worker,
    )

    cmd_population.add_parsers(sub)
    cmd_tokenizer.add_parsers(sub)
    cmd_train.add_parsers(sub)
    cmd_ngrams.add_parsers(sub)
    cmd_pretrain.add_parsers(sub)
    cmd_eval.add_parsers(sub)
    cmd_demo.add_parsers(sub)
    cmd_live.add_parsers(sub)
    cmd_keyboard.add_parsers(sub)
    cmd_worker.add_parsers(sub)
    cmd_audit.add_parsers(sub)
    return parser


INTERRUPT_GRACE = 20.0  # seconds an interrupted command has to unwind before it exits anyway


def _exit_on_sigterm(signum, frame):  # unwind like Ctrl-C, so context managers stop the TFF worker
    _exit_anyway_after(INTERRUPT_GRACE, 128 + signum, "SIGTERM")
    raise SystemExit(128 + signum)


def _exit_anyway_after(seconds: float, code: int, what: str) -> None:
    """Ends the process with ``code`` if unwinding after ``what`` takes longer than ``seconds``.

    A signal's exception can land inside TFF's gRPC or asyncio code, which may then wait on
    something that never comes: a SIGTERM was seen to leave `fedkb train` running a minute later.
    Exiting without unwinding is safe: what fedkb writes survives a SIGKILL at any moment (the
    crash tests), and the worker_binary dies with this process (its parent-death signal).
    """
    def exit_now() -> None:
        print(f"fedkb: still stopping {seconds:g} s after {what}; exiting now", file=sys.stderr, flush=True)
        os._exit(code)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


_interrupted = False


def _interrupt(signum, frame):
    # Remembered because Ctrl-C can land inside TFF's gRPC or asyncio code, which may turn the
    # KeyboardInterrupt into another exception on its way out; the user still asked to stop.
    global _interrupted
    _interrupted = True
    _exit_anyway_after(INTERRUPT_GRACE, 130, "Ctrl-C")
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    home = resolve_home(args.home)
    try:
        return _run(home, args)
    except BaseException:
        if _interrupted:
            print("fedkb: interrupted", file=sys.stderr)
            return 130
        raise


def _run(home: Home, args: argparse.Namespace) -> int:
    try:
        args.func(home, args)
    except KeyboardInterrupt:
        print("fedkb: interrupted", file=sys.stderr)
        return 130
    except FedkbError as exc:  # its message already says what and where; anything else is a bug
        if _interrupted:
            raise
        print(f"fedkb: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
