"""A device agent that SIGKILLs itself right after a secure-aggregation stage (for fault tests).

``python -m tests.federated.dying_agent --device-dir DIR --server HOST:PORT --after shares|masked``
"""

import argparse
import os
import signal
import threading
from pathlib import Path

from keyboard.agent import DeviceAgent, connect


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device-dir", type=Path, required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--after", choices=("keys", "shares", "masked"), required=True)
    args = parser.parse_args()
    agent = DeviceAgent(args.device_dir, connect(args.server))
    agent.on_stage = lambda stage: os.kill(os.getpid(), signal.SIGKILL) if stage == args.after else None
    agent.run(threading.Event(), max_rounds=1)


if __name__ == "__main__":
    main()
