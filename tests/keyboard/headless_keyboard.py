"""The keyboard, headless, with its device agent (for process-lifecycle tests): as `fedkb keyboard --server`.

``python -m tests.keyboard.headless_keyboard --device-dir DIR --server HOST:PORT``
"""

import argparse
from pathlib import Path

from keyboard.app import KeyboardApp
from keyboard.store import Device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device-dir", type=Path, required=True)
    parser.add_argument("--server", required=True)
    args = parser.parse_args()
    with Device(args.device_dir) as device:  # idle at once and on mains power: the agent starts on mount
        KeyboardApp(device, idle_after=0.0, charging=lambda: None, train_command=None, server=args.server).run(
            headless=True)


if __name__ == "__main__":
    main()
