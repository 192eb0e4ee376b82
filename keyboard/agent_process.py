"""The process that hosts one device's agent (``python -m keyboard.agent_process``), and the
keyboard's handle on it (``BackgroundAgent``): started while the device is eligible, stopped when
it is not, and dying with the keyboard.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from common import die_with_parent, messages
from common.config_options import add_config_arguments
from common.layout import DeviceLayout
from keyboard.agent import DeviceAgent, channel_for
from keyboard.agent_config import DEFAULT, AgentConfig


class BackgroundAgent:
    """The keyboard's agent process: running while the device is eligible, stopped when it is not.

    A device that stops being eligible (the user types again) leaves the round, as a phone does;
    the coordinator's over-selection covers for it. The process dies with the keyboard
    (``PR_SET_PDEATHSIG``) and logs to ``agent.log`` in the device directory.
    """

    def __init__(self, device_dir: Path, server: str, config: AgentConfig = DEFAULT):
        self.device_dir, self.server, self.config = Path(device_dir), server, config
        self.process = None
        self.starts = 0

    def command(self) -> list[str]:
        import sys

        tls = ["--tls"] if DeviceLayout(self.device_dir).tls.is_dir() and not messages.is_loopback(self.server) else []
        return [sys.executable, "-m", "keyboard.agent_process", "--device-dir", str(self.device_dir),
                "--server", self.server, "--max-backoff", str(self.config.max_backoff), *tls]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure(self, eligible: bool) -> None:
        if eligible and not self.running:
            import subprocess

            with open(DeviceLayout(self.device_dir).agent_log, "ab") as log_file:  # dies with the keyboard
                self.process = subprocess.Popen(die_with_parent.command(self.command(), signal.SIGTERM),
                                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
            self.starts += 1
        elif not eligible:
            self.stop()

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(5)
            except Exception:  # subprocess.TimeoutExpired
                self.process.kill()
                self.process.wait()
        self.process = None


def main(argv: list[str] | None = None) -> int:
    """``python -m keyboard.agent_process --device-dir DIR --server HOST:PORT``: one device's agent."""
    import argparse
    import os
    import signal

    parser = argparse.ArgumentParser(prog="keyboard.agent_process", description=main.__doc__)
    parser.add_argument("--device-dir", type=Path, required=True)
    parser.add_argument("--server", required=True, metavar="HOST:PORT")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--tls", action="store_true", help="mutual TLS with the device's credential (DIR/tls)")
    add_config_arguments(parser, AgentConfig, ("max_backoff",))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    # SIGTERM (the keyboard stopping its agent, or dying: PR_SET_PDEATHSIG) ends the agent at once, even
    # inside a check-in held open for a minute or a training step; what it writes is written atomically.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = AgentConfig(max_backoff=args.max_backoff)
    agent = DeviceAgent(args.device_dir, channel_for(args.device_dir, args.server, args.tls, config), config=config)
    try:
        agent.run(stop, max_rounds=args.rounds)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
