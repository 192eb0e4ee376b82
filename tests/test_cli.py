import signal
import subprocess
import sys

import pytest

from tests.cli_runner import fedkb
from tests.conftest import REPO
from tests.fresh_imports import imported_after


def test_help_lists_subcommands_without_importing_tensorflow():
    code = "from fedkb import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass"
    out = imported_after(code, ("tensorflow", "tensorflow_federated", "sentencepiece"), "HEAVY")
    for command in ("population", "tokenizer", "train", "audit"):
        assert command in out
    assert "HEAVY []" in out


def test_home_option_wins_over_environment(tmp_path, monkeypatch):
    from common.layout import resolve_home

    monkeypatch.setenv("FEDKB_HOME", str(tmp_path / "env"))
    assert resolve_home(str(tmp_path / "cli")).root == tmp_path / "cli"
    assert resolve_home(None).root == tmp_path / "env"
    monkeypatch.delenv("FEDKB_HOME")
    assert resolve_home(None).root.name == "fedkb"


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = fedkb(tmp_path, "population", "seed", "--corpus", tmp_path / "nope.jsonl")
    assert proc.returncode == 1
    assert "nope.jsonl: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def _main_with_command(monkeypatch, tmp_path, command):
    """Runs ``cli.main`` in this process with a parser whose only command is ``command``."""
    import argparse
    import signal

    from fedkb import cli

    def parser():
        p = argparse.ArgumentParser(prog="fedkb")
        p.add_argument("--home")
        p.set_defaults(func=lambda home, args: command())
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        return cli.main(["--home", str(tmp_path)])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def test_an_error_meant_for_the_user_is_one_line(monkeypatch, tmp_path, capsys):
    from common.errors import ConfigError, FedkbError

    def command():
        raise FedkbError("devices.jsonl line 3: no 'user' field")

    assert _main_with_command(monkeypatch, tmp_path, command) == 1
    assert capsys.readouterr().err == "fedkb: error: devices.jsonl line 3: no 'user' field\n"

    def bad_option():  # a config out of range is both a FedkbError and the ValueError it always was
        raise ConfigError("--clients-per-round must be at least 1, got 0")

    assert _main_with_command(monkeypatch, tmp_path, bad_option) == 1
    assert capsys.readouterr().err == "fedkb: error: --clients-per-round must be at least 1, got 0\n"


def test_a_plain_value_error_is_a_bug_and_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    import pytest

    def command():
        raise ValueError("an index out of range somewhere inside")

    with pytest.raises(ValueError, match="out of range somewhere inside"):
        _main_with_command(monkeypatch, tmp_path, command)
    assert "fedkb: error" not in capsys.readouterr().err


def test_seed_show_and_tokenizer_from_the_command_line(tmp_path):
    from tests.conftest import synthetic_corpus

    corpus = synthetic_corpus(tmp_path / "c.jsonl", users=8, sentences=12)
    home = tmp_path / "home"
    seeded = fedkb(home, "population", "seed", "--corpus", corpus, "--max-devices", "5")
    assert seeded.returncode == 0, seeded.stderr
    assert "Seeded 5 new devices with 60 sentences" in seeded.stdout
    again = fedkb(home, "population", "seed", "--corpus", corpus)
    assert again.returncode == 1 and "--append" in again.stderr
    shown = fedkb(home, "population", "show")
    assert shown.returncode == 0 and "5 devices, 60 sentences" in shown.stdout
    tok = fedkb(home, "tokenizer", "train", "--plain", "--vocab-size", "64")
    assert tok.returncode == 0, tok.stderr
    assert "from the summed word counts of 5 devices" in tok.stdout


def test_missing_inputs_are_refused_before_tensorflow_is_imported(tmp_path):
    # A fresh process, so that the test session's own TensorFlow import cannot hide one.
    from tests.conftest import synthetic_corpus

    empty, untokenized = tmp_path / "empty", tmp_path / "untokenized"
    corpus = synthetic_corpus(tmp_path / "c.jsonl", users=3)
    code = (
        "import sys; from fedkb import cli\n"
        f"print('STATUS', cli.main(['--home', {str(empty)!r}, 'train', '--rounds', '1']), flush=True)\n"
        f"cli.main(['--home', {str(untokenized)!r}, 'population', 'seed', '--corpus', {str(corpus)!r}])\n"
        f"print('STATUS', cli.main(['--home', {str(untokenized)!r}, 'train', '--rounds', '1']), flush=True)\n"
        f"print('STATUS', cli.main(['--home', {str(untokenized)!r}, 'pretrain', '--corpus', {str(corpus)!r}]),"
        " flush=True)\n"
        "print('HEAVY', [m for m in ('tensorflow', 'tensorflow_federated') if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("STATUS 1") == 3, proc.stdout
    errors = proc.stderr.splitlines()
    assert "fedkb population seed --corpus shakespeare" in errors[0], errors
    assert "fedkb tokenizer train" in errors[1] and "fedkb tokenizer train" in errors[2], errors
    assert "Traceback" not in proc.stderr
    assert "HEAVY []" in proc.stdout


def test_ctrl_c_exits_130_even_when_a_library_turns_it_into_another_error(tmp_path):
    # TFF's gRPC and asyncio layers can re-raise an interrupt as some other exception.
    code = (
        "import os, signal, sys\n"
        "from fedkb import cli, cmd_population\n"
        "def converted(home, args):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n"
        "        raise ValueError('cancelled by the library')\n"
        "cmd_population.cmd_population_show = converted\n"
        f"sys.exit(cli.main(['--home', {str(tmp_path)!r}, 'population', 'show']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr
    assert "cancelled by the library" not in proc.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_command_that_does_not_unwind_after_a_signal_exits_anyway(tmp_path, sig, code):
    # as when the signal's exception lands in library code that swallows it and waits for ever
    script = (
        "import os, signal, sys, time\n"
        "from fedkb import cli, cmd_population\n"
        "cli.INTERRUPT_GRACE = 0.5\n"
        "def swallowed(home, args):\n"
        "    try:\n"
        f"        os.kill(os.getpid(), {int(sig)})\n"
        "        time.sleep(1)\n"
        "    except BaseException:\n"
        "        time.sleep(600)\n"
        "cmd_population.cmd_population_show = swallowed\n"
        f"sys.exit(cli.main(['--home', {str(tmp_path)!r}, 'population', 'show']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert f"still stopping 0.5 s after {'SIGTERM' if sig == signal.SIGTERM else 'Ctrl-C'}; exiting now" in proc.stderr


def test_option_defaults_and_help_come_from_the_config_fields():
    from dataclasses import fields

    from federated.configs import LiveConfig, RolloutConfig, TrainConfig
    from fedkb.cli import build_parser

    parser = build_parser()
    train = vars(parser.parse_args(["train", "--rounds", "1"]))
    for f in fields(TrainConfig):
        if f.name in train and f.name != "seed":  # --seed: None means a secret key (public_sampling off)
            assert train[f.name] == f.default, f.name
    assert train["min_examples"] == 5 and train["clients_per_round"] == 10
    rollout = vars(parser.parse_args(["rollout"]))
    assert (rollout["threshold"], rollout["devices"], rollout["seed"]) == (0.5, 100, 0)
    assert RolloutConfig() == RolloutConfig(rollout["threshold"], rollout["devices"], rollout["seed"])
    assert vars(parser.parse_args(["population", "show"]))["min_examples"] == TrainConfig.min_examples
    assert vars(parser.parse_args(["serve"]))["threshold"] == RolloutConfig.threshold
    assert vars(parser.parse_args(["demo"]))["clients_per_round"] == 10
    serve = vars(parser.parse_args(["serve"]))
    live = [f for f in fields(LiveConfig) if f.name in serve]
    assert len(live) == 6 and all(serve[f.name] == f.default for f in live)
    assert (serve["overselect"], serve["eval_min_devices"], serve["eval_deadline"]) == (1.3, 20, 300.0)


def test_add_config_arguments_reads_type_choices_and_help():
    import argparse

    from federated.configs import TrainConfig
    from fedkb.options import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig, ("min_examples", "server_optimizer", "client_lr"),
                         flags={"client_lr": "--lr"}, defaults={"min_examples": 7})
    args = parser.parse_args(["--lr", "0.25"])
    assert (args.min_examples, args.server_optimizer, args.lr) == (7, "adam", 0.25)
    assert "train sentences a device needs to take part (default 7)" in " ".join(parser.format_help().split())
    import pytest

    with pytest.raises(SystemExit):  # not one of the field's choices
        parser.parse_args(["--server-optimizer", "sgd"])


def test_rollout_config_refuses_a_negative_threshold():
    import pytest

    from common.errors import ConfigError
    from federated.configs import RolloutConfig

    with pytest.raises(ConfigError, match="--threshold must be at least 0 points, got -1"):
        RolloutConfig(threshold=-1)
    with pytest.raises(ConfigError, match="--devices must be at least 1, got 0"):
        RolloutConfig(devices=0)
