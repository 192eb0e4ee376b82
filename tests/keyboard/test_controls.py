"""The person's controls: print/copy/once, blocked words, forgetting what was learned, opting out, settings."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Button, ListView, Switch

from common.layout import EVAL_DIR, PERSONAL_DIR
from common.layout import PERSONALIZATION_RECORD as PERSONAL_RECORD
from keyboard import controls
from keyboard.agent import DeviceAgent
from keyboard.app import KeyboardApp
from keyboard.forget import forget_learned
from keyboard.predictor import FrequencyPredictor, load_predictor
from keyboard.screens import ConfirmScreen
from keyboard.settings import BlockScreen, SettingsScreen
from keyboard.store import Device
from tests.keyboard import helpers
from tests.keyboard.helpers import FakePredictor

# After "the" come cat 3 times, dog 2, mat 1; then come the other words by count, "the" (6) first:
# a FrequencyPredictor's chips after "the " are cat, dog, mat, then the.
LOG = ["the cat sat", "the cat ran", "the cat and the dog", "the dog sat on the mat", "my ball"]


def make_app(device, predictor=None, **kwargs) -> KeyboardApp:
    kwargs.setdefault("train_command", None)  # no on-device training starting under these tests
    return helpers.make_app(device, predictor, **kwargs)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def notices(app) -> list[str]:
    return [f"{n.title} {n.message}" for n in app._notifications]


# -- the filter both the app and a replay call ----------------------------------------------------
def test_without_blocked_keeps_the_first_k_that_are_not_blocked():
    assert controls.without_blocked(["cat", "Dog", "mat", "ball"], frozenset({"dog"}), 3) == ["cat", "mat", "ball"]
    assert controls.without_blocked(["cat"], frozenset({"cat"}), 3) == []


def test_words_to_ask_counts_only_blocked_words_the_partial_word_could_become():
    blocked = frozenset({"cat", "car", "dog"})
    assert controls.words_to_ask("the ca", blocked) == 5  # cat and car could be among them
    assert controls.words_to_ask("the do", blocked) == 4
    assert controls.words_to_ask("the ", blocked) == 6  # after a space every word could be
    assert controls.words_to_ask("the x", blocked) == 3


def test_block_and_unblock_persist_in_the_status_record(device):
    controls.block(device, "  Cat ")
    controls.block(device, "dog")
    assert controls.blocked_words(device) == {"cat", "dog"}
    assert device.get("blocked") == ["cat", "dog"]
    assert controls.unblock(device, "CAT") == {"dog"}
    assert controls.unblock(device, "never-blocked") == {"dog"}


# -- blocking in the app --------------------------------------------------------------------------
async def test_f4_blocks_a_chip_and_the_word_never_comes_back_even_after_a_restart(device):
    for sentence in LOG:
        device.append(sentence)
    app = make_app(device, FrequencyPredictor(device.sentences()))
    async with app.run_test() as pilot:
        await pilot.press(*"the ")
        await settle(pilot)
        assert app.suggestions == ("cat", "dog", "mat")
        await pilot.press("f4")
        assert isinstance(app.screen, BlockScreen)
        await pilot.press("1")
        await settle(pilot)
        assert not isinstance(app.screen, BlockScreen)
        assert app.suggestions == ("dog", "mat", "the")  # three remain: the app asked for four
        assert any("“cat” will not be suggested" in n for n in notices(app))
        await pilot.press(*"c")  # "the c": cat was the only word starting with c
        await settle(pilot)
        assert app.suggestions == ()
    assert controls.blocked_words(device) == {"cat"}

    again = make_app(device, FrequencyPredictor(device.sentences()))
    async with again.run_test() as pilot:
        await pilot.press(*"the ")
        await settle(pilot)
        assert again.suggestions == ("dog", "mat", "the")


async def test_escape_leaves_the_chips_alone_and_f4_without_chips_only_rings(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"ab")
        await settle(pilot)
        await pilot.press("f4", "escape")
        await settle(pilot)
        assert app.suggestions == ("ab1", "ab2", "ab3") and controls.blocked_words(device) == set()
    empty = make_app(device, FakePredictor(words=()))
    async with empty.run_test() as pilot:
        await settle(pilot)
        await pilot.press("f4")
        assert not isinstance(empty.screen, BlockScreen)
        assert any("no suggestion to block" in n for n in notices(empty))


# -- the text goes somewhere ----------------------------------------------------------------------
async def test_ctrl_y_copies_the_line_or_else_the_last_sentence(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+y")
        assert app.clipboard == "" and any("Nothing to copy" in n for n in notices(app))
        await pilot.press(*"hello  there", "ctrl+y")
        assert app.clipboard == "hello there"
        await pilot.press("enter", "ctrl+y")
        assert app.clipboard == "hello there"  # the line is empty: the sentence just finished
        await pilot.press(*"good morning", "ctrl+y")
        assert app.clipboard == "good morning"


async def test_session_text_holds_finished_sentences_incognito_ones_too_and_the_unfinished_line(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"first one", "enter")
        await pilot.press("ctrl+n", *"secret!", "ctrl+n")
        await pilot.press(*"first one", "enter")  # the same sentence again counts again
        await pilot.press(*"not  done ")
        await settle(pilot)
        assert app.session_text() == ["first one", "secret!", "first one", "not done"]
    assert device.sentences() == ["first one", "first one"]  # incognito: printed, never logged


async def test_once_closes_the_app_after_the_first_sentence(device):
    app = make_app(device, once=True)
    async with app.run_test() as pilot:
        await pilot.press(*"just this.")
        await pilot.pause()
        assert app._exit  # exit() was called: run_test returns, as app.run() would
    assert app.session_text() == ["just this."] and device.sentences() == ["just this."]


# -- forgetting what was learned ------------------------------------------------------------------
def _fake_personal(device: Device) -> None:
    (device.directory / PERSONAL_DIR).mkdir()
    (device.directory / PERSONAL_DIR / "weights.npz").write_bytes(b"x")
    (device.directory / "eval").mkdir()
    (device.directory / EVAL_DIR / PERSONAL_RECORD).write_text("{}")
    (device.directory / "cache").mkdir()


def test_forget_learned_keeps_the_log_and_learns_only_from_later_sentences(device):
    for sentence in LOG:
        device.append(sentence)
    _fake_personal(device)
    gone = forget_learned(device)
    assert gone.kept_sentences == 5 and gone.personal_model and gone.cache
    assert device.sentences() == LOG
    for path in (PERSONAL_DIR, f"{EVAL_DIR}/{PERSONAL_RECORD}", "cache"):
        assert not (device.directory / path).exists()
    assert controls.learnable_splits(device).train == []
    assert load_predictor(device.directory).suggest("the ") == []  # no model: word counts, of nothing yet
    device.append("the owl flew")
    assert load_predictor(device.directory).suggest("the ") == ["owl", "flew", "the"]  # only the new sentence's
    assert len(device.splits().train) == 5  # federated training still sees the whole log (6 sentences, 20 % held out)


async def test_forget_learned_in_the_app_asks_then_drops_the_counts_and_keeps_the_log(device):
    for sentence in LOG:
        device.append(sentence)
    _fake_personal(device)
    app = make_app(device, FrequencyPredictor(device.sentences()))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f9")
        assert isinstance(app.screen, SettingsScreen)
        await pilot.click("#forget-learned")
        assert isinstance(app.screen, ConfirmScreen) and "5 sentences of the log stay" in app.screen.question
        await pilot.click("#confirm")
        await settle(pilot)
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("escape", *"the ")
        await settle(pilot)
        assert app.suggestions == ()
    assert device.count() == 5 and not (device.directory / PERSONAL_DIR).exists()


# -- opting out of federated rounds ---------------------------------------------------------------
class _RecordingAgent:
    def __init__(self) -> None:
        self.calls: list[bool] = []
        self.stopped = 0
        self.running = False

    def ensure(self, eligible: bool) -> None:
        self.calls.append(eligible)

    def stop(self) -> None:
        self.stopped += 1


async def test_an_opted_out_device_never_starts_its_agent(device):
    for _ in range(6):
        device.append("the cat sat")
    controls.set_federated(device, False)
    app = make_app(device, idle_after=0.0)
    app.agent = _RecordingAgent()
    async with app.run_test() as pilot:
        await settle(pilot)
        app.refresh_status()
        assert app.agent.calls and not any(app.agent.calls)


async def test_the_settings_switch_opts_out_and_in_and_stops_a_running_agent(device):
    app = make_app(device, idle_after=0.0)
    app.agent = _RecordingAgent()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f9")
        switch = app.screen.query_one("#federated", Switch)
        assert switch.value is True and "ON  take part" in str(app.screen.query_one("#federated-label").render())
        await pilot.click("#federated")
        await settle(pilot)
        assert device.get("federated") is False and app.agent.stopped == 1
        assert "OFF take part" in str(app.screen.query_one("#federated-label").render())
        app.agent.calls.clear()
        app.refresh_status()
        assert app.agent.calls == [False]
        await pilot.click("#federated")
        await settle(pilot)
        assert device.get("federated") is True


class _Channel:
    def unary_unary(self, method):
        def call(*args, **kwargs):
            raise AssertionError(f"an opted-out device called {method}")
        return call


def test_device_agent_refuses_to_check_in_or_call_when_opted_out(device):
    controls.set_federated(device, False)
    agent = DeviceAgent(device.directory, _Channel())
    with pytest.raises(controls.OptedOut, match="turned federated training and evaluation off"):
        agent.check_in()
    stats = agent.run(threading.Event())  # returns at once, without a call
    assert stats.check_ins == 0 and stats.opted_out


# -- the settings screen --------------------------------------------------------------------------
async def test_settings_show_each_state_and_unblock(device):
    controls.block(device, "cat")
    controls.block(device, "dog")
    app = make_app(device, FakePredictor(words=("cat", "dog", "mat", "ball")))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press(*"x ")
        await settle(pilot)
        assert app.suggestions == ("mat", "ball")
        await pilot.press("f9")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        assert screen.query_one("#incognito", Switch).value is False
        listing = screen.query_one("#blocked", ListView)
        assert [item.name for item in listing.children] == ["cat", "dog"]
        listing.index = 1
        await pilot.click("#unblock")
        await settle(pilot)
        assert [item.name for item in screen.query_one("#blocked", ListView).children] == ["cat"]
        assert controls.blocked_words(device) == {"cat"}
        await pilot.click("#incognito")
        await pilot.pause()
        assert app.incognito is True
        await pilot.press("escape")
        await settle(pilot)
        assert app.suggestions == ("dog", "mat", "ball")
        await pilot.press("ctrl+n", "f9")
        assert app.screen.query_one("#incognito", Switch).value is False
        assert not app.screen.query_one("#unblock", Button).disabled


def test_fedkb_device_forget_learned_by_user_keeps_the_log(tmp_path, capsys, monkeypatch):
    import argparse

    from common.layout import Home
    from fedkb.cmd_keyboard import cmd_device_forget_learned

    home = Home(tmp_path / "home")
    with Device(home.device("dev-abc"), create=True) as device:
        device.set(user="alice")
        for sentence in LOG:
            device.append(sentence)
        _fake_personal(device)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    cmd_device_forget_learned(home, argparse.Namespace(device=None, user="alice", yes=False))
    assert "Nothing was forgotten" in capsys.readouterr().out
    assert (home.device("dev-abc") / PERSONAL_DIR).exists()
    cmd_device_forget_learned(home, argparse.Namespace(device=None, user="alice", yes=True))
    assert capsys.readouterr().out.strip() == ("device dev-abc: forgot what it learned (and its personal model); "
                                               "kept the 5 sentences of its log")
    with Device(home.device("dev-abc")) as device:
        assert device.sentences() == LOG and controls.learnable_splits(device).train == []
