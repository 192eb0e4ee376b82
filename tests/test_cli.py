import subprocess
import sys

from tests.conftest import REPO


def test_help_lists_subcommands_without_importing_tensorflow():
    code = (
        "import sys; from fedkb import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'tensorflow_federated', 'sentencepiece') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    for command in ("population", "tokenizer", "train"):
        assert command in out
    assert "HEAVY []" in out


def test_home_option_wins_over_environment(tmp_path, monkeypatch):
    from fedkb.home import resolve_home

    monkeypatch.setenv("FEDKB_HOME", str(tmp_path / "env"))
    assert resolve_home(str(tmp_path / "cli")).root == tmp_path / "cli"
    assert resolve_home(None).root == tmp_path / "env"
    monkeypatch.delenv("FEDKB_HOME")
    assert resolve_home(None).root.name == "fedkb"


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fedkb.cli", "--home", str(tmp_path), "population", "seed", "--corpus", str(tmp_path / "nope.jsonl")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 1
    assert "nope.jsonl: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
