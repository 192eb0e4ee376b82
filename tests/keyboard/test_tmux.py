"""The keyboard in a real terminal: ``fedkb keyboard`` under tmux, keys sent as a person would type them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from common.layout import Home
from keyboard import install
from keyboard.predictor import load_predictor
from keyboard.store import Device
from tests.conftest import REPO
from tests.keyboard.helpers import publish_random

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

CHIPS = re.compile(r"F1 (\S+)\s*│.*F2 (\S+)\s*│.*F3 (\S+)\s*│")


class Tmux:
    """One detached session on a private tmux server, so a person's own tmux is never touched."""

    def __init__(self, command: str, width: int = 120, height: int = 30):
        # A socket in a folder of our own (short enough for a Unix socket path), removed in kill().
        self._dir = tempfile.mkdtemp(prefix="fedkb-tmux-")
        self.socket, self.name = os.path.join(self._dir, "sock"), "kb"
        # COLUMNS/LINES inherited from the test runner would override the pane's real size.
        self._run("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                  f"env -u COLUMNS -u LINES {command}")

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=10)

    def send(self, *keys: str) -> None:
        self._run("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self._run("send-keys", "-t", self.name, "-l", text)

    def screen(self) -> str:
        return self._run("capture-pane", "-t", self.name, "-p").stdout

    def alive(self) -> bool:
        return self._run("has-session", "-t", self.name).returncode == 0

    def wait_for(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s; the screen shows:\n{self.screen()}")

    def kill(self) -> None:
        self._run("kill-session", "-t", self.name)
        self._run("kill-server")
        shutil.rmtree(self._dir, ignore_errors=True)


def chips(screen: str) -> tuple[str, ...] | None:
    match = CHIPS.search(screen)
    return None if match is None or "·" in match.groups() else match.groups()


def test_typing_in_a_real_terminal_suggests_and_logs(tmp_path):
    home = Home(tmp_path / "home")
    version = publish_random(home.models, seed=2)
    with Device(home.device("tmux-dev"), create=True):
        pass
    install.install(home.device("tmux-dev"), version.path)
    expected = load_predictor(home.device("tmux-dev"))  # the keyboard's own product, learning as it does

    started = time.monotonic()
    tmux = Tmux(f"{sys.executable} -m fedkb.cli --home {home.root} keyboard --device tmux-dev")
    try:
        tmux.wait_for(lambda s: "model 0001" in s and chips(s) is not None)
        print(f"first suggestions {time.monotonic() - started:.2f} s after start")
        tmux.type("the ca")
        screen = tmux.wait_for(lambda s: "the ca" in s and chips(s) == tuple(expected.suggest("the ca")))
        second = chips(screen)[1]
        tmux.send("M-2")  # Alt+2 accepts the second suggestion
        tmux.wait_for(lambda s: f"the {second} " in s)
        tmux.type("sat")
        tmux.send("Enter")
        tmux.wait_for(lambda s: f"✓ logged  the {second} sat" in s)
        expected.observe(f"the {second} sat")  # the personal model learns the sentence at once
        tmux.type("you ")
        screen = tmux.wait_for(lambda s: chips(s) == tuple(w for w in expected.suggest("you ") if w.strip()))
        first = chips(screen)[0]
        tmux.send("F1")
        tmux.wait_for(lambda s: f"you {first} " in s)
        tmux.type("!")  # ends the sentence; the accepted word's space gives way to the punctuation
        tmux.wait_for(lambda s: f"✓ logged  you {first}!" in s)
        with Device(home.device("tmux-dev")) as device:
            assert device.sentences() == [f"the {second} sat", f"you {first}!"]
        tmux.send("C-q")
        deadline = time.monotonic() + 10
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not tmux.alive(), "ctrl+q did not quit the keyboard"
    finally:
        tmux.kill()


def test_cli_help_lists_the_keyboard():
    out = subprocess.run([sys.executable, "-m", "fedkb.cli", "keyboard", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--device" in out.stdout


def test_print_once_in_a_shell_leaves_only_the_sentence_in_the_variable(tmp_path):
    """``msg=$(fedkb keyboard --print --once)`` in a real terminal, with F4 blocking and Ctrl+Y copying on the way."""
    home = Home(tmp_path / "home")
    with Device(home.device("tmux-print"), create=True) as device:
        for sentence in ("the cat sat", "the cat ran", "the cat and the dog", "the dog sat on the mat"):
            device.append(sentence)
    raw, msg, done = tmp_path / "raw", tmp_path / "msg", tmp_path / "done"
    script = tmp_path / "run.sh"
    # stdout of the keyboard is a pipe (into tee, then into $msg): tee keeps the exact bytes it got.
    script.write_text(f"cd {REPO}\n"
                      f"msg=$({sys.executable} -m fedkb.cli --home {home.root} keyboard --device tmux-print "
                      f"--print --once --no-federated | tee {raw})\n"
                      f"printf '%s' \"$msg\" > {msg}\n"
                      f"touch {done}\n")
    tmux = Tmux(f"sh {script}")
    try:
        tmux._run("set-option", "-s", "set-clipboard", "on")  # tmux keeps what OSC 52 copies as a paste buffer
        tmux.wait_for(lambda s: "device tmux-print" in s)
        tmux.type("the ")
        tmux.wait_for(lambda s: chips(s) == ("cat", "dog", "mat"))  # the person's own word counts: no model
        tmux.send("F4")
        tmux.wait_for(lambda s: "Never suggest which word again" in s)
        tmux.type("1")
        tmux.wait_for(lambda s: chips(s) == ("dog", "mat", "the"))
        tmux.type("dog sat")
        tmux.send("C-y")
        tmux.wait_for(lambda s: "Copied to the clipboard: the dog sat" in s)
        assert tmux._run("show-buffer").stdout == "the dog sat"
        tmux.send("Enter")  # --once: the keyboard closes, the shell carries on
        deadline = time.monotonic() + 20
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done.exists(), f"the keyboard did not close after the sentence; the screen shows:\n{tmux.screen()}"
    finally:
        tmux.kill()
    assert msg.read_text() == "the dog sat"
    assert raw.read_bytes() == b"the dog sat\n"  # nothing of the drawing, nothing else
    with Device(home.device("tmux-print")) as device:
        assert device.sentences()[-1] == "the dog sat" and device.get("blocked") == ["cat"]
