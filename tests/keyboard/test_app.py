"""The keyboard app driven with Pilot: a fake predictor, a real device log in a temporary folder."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from textual import events

from keyboard import install
from keyboard.app import KeyboardApp
from keyboard.app_commands import key_display
from keyboard.predictor import FrequencyPredictor, load_predictor
from keyboard.screens import ConfirmScreen, EvalScreen, HelpScreen, load_results, recall_chart
from keyboard.store import MAX_SENTENCE_CHARS, Device
from keyboard.widgets import Chip, DeviceStatus, StatusBar, TypingInput
from tests.conftest import REPO
from tests.keyboard.helpers import FakePredictor, make_app, publish_random


async def settle(pilot) -> None:
    """Lets workers finish and their messages be handled."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def typed(app) -> str:
    return app.query_one(TypingInput).value


def notices(app) -> list[str]:
    return [f"{n.title} {n.message}" for n in app._notifications]


def status_text(app) -> str:
    return str(app.query_one(StatusBar).render())


async def test_typing_updates_the_chips(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"hello wo")
        await settle(pilot)
        assert app.suggestions == ("wo1", "wo2", "wo3")
        assert [c.word for c in app.query(Chip)] == ["wo1", "wo2", "wo3"]
        await pilot.press("space")
        await settle(pilot)
        assert [c.word for c in app.query(Chip)] == ["next1", "next2", "next3"]


@pytest.mark.parametrize("key, word", [("tab", "wo1"), ("f1", "wo1"), ("alt+1", "wo1"),
                                       ("f2", "wo2"), ("alt+2", "wo2"), ("f3", "wo3"), ("alt+3", "wo3")])
async def test_accept_key_replaces_the_partial_word(device, key, word):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"hello wo")
        await settle(pilot)
        await pilot.press(key)
        assert typed(app) == f"hello {word} "
        assert app.query_one(TypingInput).has_focus


async def test_accept_after_a_space_appends_the_next_word(device):
    app = make_app(device, FakePredictor(words=("there", "world", "you")))
    async with app.run_test() as pilot:
        await pilot.press(*"hello ")
        await settle(pilot)
        await pilot.press("f2")
        assert typed(app) == "hello world "


async def test_empty_suggestions_are_not_shown(device):
    app = make_app(device, FakePredictor(words=("", "dog", " ")))
    async with app.run_test() as pilot:
        await pilot.press(*"a ")
        await settle(pilot)
        assert app.suggestions == ("dog",)
        await pilot.press("f2")  # nothing there: the line is unchanged
        assert typed(app) == "a "


async def test_clicking_a_chip_inserts_its_word_and_keeps_focus(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"see you to")
        await settle(pilot)
        await pilot.click("#chip-2")
        assert typed(app) == "see you to3 "
        assert app.query_one(TypingInput).has_focus


async def test_enter_logs_exactly_one_sentence_with_a_timestamp(device):
    app = make_app(device)
    before = time.time()
    async with app.run_test() as pilot:
        await pilot.press(*"good   morning ", "enter")
        await settle(pilot)
        assert typed(app) == ""
        assert "1 sentence logged" in status_text(app)
    rows = sqlite3.connect(device.directory / "log.sqlite").execute("SELECT ts, text FROM sentences").fetchall()
    assert len(rows) == 1 and rows[0][1] == "good morning" and before <= rows[0][0] <= time.time()


async def test_sentence_punctuation_ends_and_logs_the_sentence(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"see you!")
        await pilot.press(*"how are yo", "tab", "question_mark")  # "yo1 ?" attaches: "yo1?"
        await pilot.press(*"e.g")  # punctuation inside a word is kept; the sentence goes on
        await settle(pilot)
        assert typed(app) == "g"
    assert device.sentences() == ["see you!", "how are yo1?", "e."]


async def test_empty_enter_is_refused_with_a_notice(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press("space", "enter")
        await pilot.pause()
        assert any("Nothing to log" in n for n in notices(app))
    assert device.count() == 0


async def test_incognito_logs_nothing_and_shows_it(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+n", *"secret plans", "enter", *"more secrets.")
        await pilot.pause()
        assert app.incognito and app.has_class("-incognito")
        assert "INCOGNITO" in str(app.query_one(TypingInput).border_title)
        assert typed(app) == "" and device.count() == 0
        await pilot.press("ctrl+n", *"public words", "enter")
        await pilot.pause()
        assert not app.incognito and not app.query_one(TypingInput).border_title
    assert device.sentences() == ["public words"]


async def test_delete_asks_first_then_wipes_the_log_and_personal_model(device):
    device.append("one sentence")
    device.append("another one")
    (device.directory / "personal").mkdir()
    (device.directory / "personal" / "weights.npz").write_bytes(b"x")
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press("f8")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("tab")  # priority keys reach the dialog: focus moves, nothing is typed
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmScreen) and device.count() == 2
        await pilot.press("f8")
        await pilot.click("#confirm")
        await settle(pilot)
        assert device.count() == 0 and not (device.directory / "personal").exists()
        assert any("deleted" in n for n in notices(app))
        assert "0 sentences logged" in status_text(app)


async def test_delete_also_removes_the_references_fitted_on_pooled_text(device, tmp_path):
    device.append("one sentence")
    references = tmp_path / "references"
    (references / "centralized_lstm" / "abc").mkdir(parents=True)
    (references / "pooled.json").write_text("{}")
    app = make_app(device, references_dir=references)
    async with app.run_test() as pilot:
        await pilot.press("f8")
        assert isinstance(app.screen, ConfirmScreen) and str(references) in app.screen.question
        await pilot.click("#confirm")
        await settle(pilot)
        assert device.count() == 0 and not references.exists()
        assert any("references fitted on pooled text were deleted" in n for n in notices(app))


async def test_starting_without_a_model_suggests_from_word_counts_and_says_so(device):
    for sentence in ("hello there", "hello world", "help me"):
        device.append(sentence)
    app = KeyboardApp(device, predictor_factory=load_predictor, models_dir=None, charging=lambda: None)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert isinstance(app.predictor, FrequencyPredictor)
        assert "no model yet — suggesting from your own word counts" in status_text(app)
        await pilot.press(*"hel")
        await settle(pilot)
        assert app.suggestions == ("hello", "help")
        await pilot.press("tab", *"new", "enter", *"hello ")  # the fallback learns each logged sentence
        await settle(pilot)
        assert app.suggestions[0] == "new"


async def test_a_huge_paste_is_refused_and_the_log_is_intact(device):
    device.append("kept sentence")
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"abc")
        app.query_one(TypingInput).post_message(events.Paste("x" * MAX_SENTENCE_CHARS))
        await settle(pilot)
        assert typed(app) == "abc"
        assert any("Paste refused" in n for n in notices(app))
        # A line that got too long some other way is refused at Enter, and kept for editing.
        app.query_one(TypingInput).value = "y " * (MAX_SENTENCE_CHARS // 2 + 1)
        await pilot.press("enter")
        await settle(pilot)
        assert any("Not logged" in n for n in notices(app)) and typed(app).startswith("y y")
    assert device.sentences() == ["kept sentence"]


async def test_a_small_paste_is_inserted(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        app.query_one(TypingInput).post_message(events.Paste("pasted words"))
        await settle(pilot)
        assert typed(app) == "pasted words"


class SlowFirstPredictor(FakePredictor):
    """Answers the first text slowly, so its answer arrives after newer keystrokes."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def suggest(self, text, k=3):
        if text == "a":
            self.release.wait(5)
        return super().suggest(text, k)


async def test_stale_suggestions_are_dropped(device):
    predictor = SlowFirstPredictor()
    app = make_app(device, predictor)
    async with app.run_test() as pilot:
        await pilot.press("a")
        await pilot.pause(0.05)
        await pilot.press("b")
        await pilot.pause(0.1)
        predictor.release.set()  # the answer for "a" arrives last
        await settle(pilot)
        assert app.suggestions == ("ab1", "ab2", "ab3")


async def test_results_arriving_while_another_screen_is_open_are_kept(device):
    predictor = SlowFirstPredictor()
    app = make_app(device, predictor)
    async with app.run_test() as pilot:
        await pilot.press("a", "f12")
        assert isinstance(app.screen, HelpScreen)
        predictor.release.set()
        await settle(pilot)
        await pilot.press("escape")
        assert app.suggestions == ("a1", "a2", "a3")


async def test_a_newly_promoted_version_is_installed_and_swapped_in(device, tmp_path):
    models = tmp_path / "models"

    def factory(device_dir):
        current = install.installed(device_dir)
        return FakePredictor(version=current.version if current else None)

    app = make_app(device, FakePredictor(), predictor_factory=factory, models_dir=models, check_every=0.2)
    async with app.run_test() as pilot:
        await pilot.press(*"typing on")
        await settle(pilot)
        assert app.predictor.version is None
        publish_random(models, seed=1)  # the server promotes a version; the periodic check finds it
        for _ in range(50):
            await pilot.pause(0.05)
            if app.predictor.version == "0001":
                break
        await settle(pilot)
        assert app.predictor.version == "0001" and install.installed(device.directory).version == "0001"
        assert any("Installed model 0001" in n for n in notices(app))
        assert "model 0001" in status_text(app)
        assert typed(app) == "typing on" and app.suggestions == ("on1", "on2", "on3")  # typing went on
        publish_random(models, seed=2)
        await pilot.press("ctrl+r")  # on demand
        await settle(pilot)
        assert app.predictor.version == "0002"


async def test_a_bad_registry_is_reported_and_typing_continues(device, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "registry.json").write_text(json.dumps({"latest": "../../etc"}))
    app = make_app(device, models_dir=models)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert any("Model update failed" in n for n in notices(app))
        await pilot.press(*"still ok")
        await settle(pilot)
        assert app.suggestions == ("ok1", "ok2", "ok3")


@pytest.mark.parametrize("key", ["ctrl+q", "ctrl+c"])
async def test_quit_keys(device, key):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press(*"abc", key)
        await pilot.pause()
        assert app._exit and app.return_code == 0


async def test_help_lists_every_binding(device):
    app = make_app(device)
    async with app.run_test() as pilot:
        await pilot.press("f12")
        assert isinstance(app.screen, HelpScreen)
        keys = [k for k, _ in app.screen.rows]
        assert "Tab / F1 / Alt+1" in keys and "Ctrl+N" in keys and "Enter" in keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
    assert key_display("ctrl+q,ctrl+c") == "Ctrl+Q / Ctrl+C"


def _write_eval_files(device_dir, evals_dir):
    (device_dir / "eval").mkdir(parents=True)
    for version, r1, r3 in (("0001", 0.10, 0.20), ("0002", 0.15, 0.30)):
        (device_dir / "eval" / f"{version}.json").write_text(json.dumps(
            {"model_version": version, "recall_at_1": r1, "recall_at_3": r3, "predictions": 40}))
    evals_dir.mkdir(parents=True)
    (evals_dir / "0002.json").write_text(json.dumps({
        "model_version": "0002", "devices": 60, "recall_at_1": 0.12, "recall_at_3": 0.25,
        "baselines": {"ngram": {"recall_at_1": 0.08, "recall_at_3": 0.16},
                      "unigram": {"recall_at_1": 0.05, "recall_at_3": 0.1}}}))
    (evals_dir / "broken.json").write_text("{not json")
    (device_dir / "eval" / "personalization.json").write_text(json.dumps(
        {"global_version": "0002", "use_personal": False, "global": {"recall_at_1": 0.15, "recall_at_3": 0.3},
         "personal": {"recall_at_1": 0.1, "recall_at_3": 0.2}}))


async def test_eval_screen_shows_results_and_copes_with_missing_files(device, tmp_path):
    evals = tmp_path / "server" / "evals"
    app = make_app(device, evals_dir=evals)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+t")
        assert isinstance(app.screen, EvalScreen)
        assert app.screen.query_one("#device-results").has_class("empty")
        await pilot.press("escape")
        _write_eval_files(device.directory, evals)
        await pilot.press("ctrl+t")
        assert not app.screen.query_one("#device-results").has_class("empty")
        assert not app.screen.query_one("#aggregate-results").has_class("empty")
        assert app.screen.query("#personal-results")
    assert [r["model_version"] for r in load_results(evals)] == ["0002"]  # the unreadable file is skipped
    # The personalization record is not a version's result.
    assert [r["model_version"] for r in load_results(device.directory / "eval")] == ["0001", "0002"]
    chart = recall_chart(load_results(device.directory / "eval"), load_results(evals), width=10).plain
    assert "0002 you ██████████  30.0%" in chart  # the longest bar
    assert "0001 you ██████▋" in chart and "0002 all ████████▍" in chart  # 20/30 and 25/30 of it, in eighths


def test_eligibility_needs_every_condition():
    base = dict(device_id="d", model=None, model_note="", sentences=10, train_sentences=8, last_round=None)
    assert DeviceStatus(**base, idle=True, charging=True, unmetered=True).eligible is True
    assert DeviceStatus(**base, idle=True, charging=None).eligible is None
    assert DeviceStatus(**base, idle=False, charging=None).eligible is False
    assert DeviceStatus(**{**base, "train_sentences": 4}, idle=True, charging=True, unmetered=True).eligible is False


async def test_idle_and_charging_reach_the_status_bar(device):
    for i in range(7):
        device.append(f"sentence {i}")
    app = make_app(device, idle_after=0.0, charging=lambda: True)
    async with app.run_test() as pilot:
        await pilot.pause()
        status = app.status
        assert status.idle and status.charging and status.train_sentences == 6 and status.eligible is None
        assert "eligible to train: maybe" in status_text(app)


def test_starting_the_keyboard_does_not_import_tensorflow(tmp_path):
    home = tmp_path / "home"
    version = publish_random(home / "server" / "models")
    with Device(home / "devices" / "d1", create=True):
        pass
    install.install(home / "devices" / "d1", version.path)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from fedkb.cli import build_parser
        from fedkb.cmd_keyboard import open_device
        from common.layout import Home
        from keyboard.app import KeyboardApp
        from keyboard.predictor import ModelPredictor, load_predictor
        from keyboard.mix import ProductPredictor
        build_parser().parse_args(["keyboard", "--device", "d1"])
        home = Home(Path({str(home)!r}))
        device = open_device(home, device_id="d1")
        predictor = load_predictor(device.directory)
        assert isinstance(predictor, ProductPredictor) and isinstance(predictor.lstm, ModelPredictor), predictor
        app = KeyboardApp(device, predictor, models_dir=home.models)
        predictor.suggest("the ca")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_federated", "keras"))
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_open_device_finds_the_users_device_by_its_own_status_record_or_makes_one(tmp_path, monkeypatch):
    import pytest

    from common.layout import Home
    from federated.population import INDEX_NAME, members
    from fedkb.cmd_keyboard import open_device
    from keyboard.store import DEVICE_ID_PATTERN, DeviceError

    monkeypatch.setattr("fedkb.cmd_keyboard._login_name", lambda: "ada lovelace")
    home = Home(tmp_path / "home")
    opened = []
    for kwargs in ({}, {"user": "ada lovelace"}, {}):  # the default user is the login name
        with open_device(home, **kwargs) as device:
            opened.append(device.id)
    assert len(set(opened)) == 1 and DEVICE_ID_PATTERN.fullmatch(opened[0])
    with open_device(home, user="Hamlet::HAMLET") as hamlet:
        assert hamlet.id != opened[0] and hamlet.get("user") == "Hamlet::HAMLET"
    assert [m.device_id for m in members(home)] == [opened[0], hamlet.id]
    with open_device(home, device_id=opened[0]) as device:
        assert device.get("source") == "keyboard" and device.get("user") == "ada lovelace" and device.count() == 0
    index = b"".join(p.read_bytes() for p in home.devices.iterdir() if p.name.startswith(INDEX_NAME))
    assert b"ada lovelace" not in index and b"lovelace" not in index and b"HAMLET" not in index
    with pytest.raises(DeviceError, match="no device at .*nobody"):
        open_device(home, device_id="nobody")


async def test_idle_eligible_device_trains_in_the_background_and_reloads(tmp_path, device):
    """On-device training starts by itself when the device is idle and has a model; the app reloads."""
    version = publish_random(tmp_path / "models")
    install.install(device.directory, version.path)
    for i in range(8):
        device.append(f"the cat sat {i}")
    record = {"global": {"recall_at_1": 0.1}, "personal": {"recall_at_1": 0.25}, "use_personal": True}
    fake = [sys.executable, "-c", f"import json; print(json.dumps({record!r}))"]
    reloads = []

    def factory(device_dir):
        reloads.append(device_dir)
        return FakePredictor()

    app = make_app(device, predictor_factory=factory, idle_after=0.0, train_command=lambda d: fake)
    async with app.run_test() as pilot:
        for _ in range(50):
            await pilot.pause(0.1)
            if reloads:
                break
        await settle(pilot)
        assert reloads, "the app did not reload its predictor after on-device training"
        notes = [n.message for n in app._notifications]
        assert any("Personal model recall@1 25.0% vs global 10.0%" in n for n in notes)
        assert app._training is None
        # Nothing new to learn from: it does not start again by itself.
        app.refresh_status()
        assert app._training is None


async def test_failed_on_device_training_is_reported(tmp_path, device):
    version = publish_random(tmp_path / "models")
    install.install(device.directory, version.path)
    fail = [sys.executable, "-c", "import sys; print('personalize: too few sentences', file=sys.stderr); sys.exit(1)"]
    app = make_app(device, idle_after=1e9, train_command=lambda d: fail)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+o")
        for _ in range(50):
            await pilot.pause(0.1)
            if app._training is None:
                break
        await settle(pilot)
        assert any("too few sentences" in n.message for n in app._notifications)
