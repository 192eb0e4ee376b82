import subprocess
import sys

from tests.cli_runner import fedkb
from tests.conftest import REPO


def test_help_lists_subcommands_without_importing_tensorflow():
    code = (
        "import sys; from fedkb import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'tensorflow_federated', 'sentencepiece') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
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
        f"print('STATUS', cli.main(['--home', {str(untokenized)!r}, 'pretrain', '--corpus', {str(corpus)!r}]), flush=True)\n"
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
        "from fedkb import cli\n"
        "def converted(home, args):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n"
        "        raise ValueError('cancelled by the library')\n"
        "cli.cmd_population_show = converted\n"
        f"sys.exit(cli.main(['--home', {str(tmp_path)!r}, 'population', 'show']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr
    assert "cancelled by the library" not in proc.stderr
