"""A damaged checkpoint or tokenizer stops ``fedkb train`` from resuming, with a message naming the file.

Training runs once per module (two rounds of the tiny model); each test damages a copy of that
home. TensorFlow notices most damage to a SavedModel, but raises whatever it likes (``OpError``,
``OSError``, ``IndexError``, ``KeyError``…), which the command line would print as a traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.layout import Home
from tests.cli_runner import fedkb

pytestmark = pytest.mark.slow

CHECKPOINT = "program_state_2"
TRAIN_ARGS = ["--preset", "tiny", "--clients-per-round", "3", "--client-lr", "0.5", "--server-lr", "0.05"]


def _config():
    """The settings ``fedkb train`` builds from ``TRAIN_ARGS``, so the CLI can resume this checkpoint."""
    from fedkb import cli, options

    return options.train_config_from(cli.build_parser().parse_args(["train", "--rounds", "1", *TRAIN_ARGS]))


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


@pytest.fixture(scope="module")
def trained(tmp_path_factory, runtime) -> Home:
    """A home after two rounds: checkpoints ``program_state_1`` and ``program_state_2``."""
    from federated import program
    from federated.population import seed
    from federated.vocabulary import train_tokenizer
    from tests.conftest import synthetic_corpus
    from tokenizer.vocab import TokenizerConfig

    root = tmp_path_factory.mktemp("trained")
    home = Home(root / "home")
    seed(home, synthetic_corpus(root / "synthetic.jsonl"))
    train_tokenizer(home, TokenizerConfig(vocab_size=64))
    program.run(home, _config(), rounds=2)
    assert (home.state / CHECKPOINT / "saved_model.pb").is_file()
    return home


@pytest.fixture
def home(trained, tmp_path) -> Home:
    copy = Home(tmp_path / "home")
    shutil.copytree(trained.root, copy.root)
    return copy


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def _data_file(checkpoint: Path) -> Path:
    return next((checkpoint / "variables").glob("variables.data-*"))


DAMAGE = {
    "data-truncated": lambda c: _truncate(_data_file(c)),
    "data-flipped": lambda c: _flip(_data_file(c)),
    "index-truncated": lambda c: _truncate(c / "variables" / "variables.index"),
    "graph-truncated": lambda c: _truncate(c / "saved_model.pb"),
    "graph-flipped": lambda c: _flip(c / "saved_model.pb"),
    "variables-deleted": lambda c: shutil.rmtree(c / "variables"),
    "graph-deleted": lambda c: (c / "saved_model.pb").unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_refused_naming_it(home, damage):
    from federated import program, run_setup

    checkpoint = home.state / CHECKPOINT
    DAMAGE[damage](checkpoint)
    with pytest.raises(run_setup.TrainError) as info:
        program.run(home, _config(), rounds=3)
    message = str(info.value)
    assert str(checkpoint) in message and "--fresh" in message, message
    assert "\n" not in message
    assert not (home.models / "0002").exists()  # nothing trained on top of a damaged state


def test_an_intact_checkpoint_resumes(home):
    from federated import program

    summary = program.run(home, _config(), rounds=3)
    assert [r.round_num for r in summary.rounds] == [3]


def test_a_damaged_server_tokenizer_is_refused_naming_it(home):
    from federated import program, run_setup

    model = home.tokenizer / "spm.model"
    _flip(model)
    with pytest.raises(run_setup.TrainError, match=f"{model}: .*(sha256 does not match|not a SentencePiece model)"):
        program.run(home, _config(), rounds=3)


def test_a_retrained_tokenizer_is_refused_naming_it(home):
    import collections

    from federated import program, run_setup
    from tokenizer.vocab import Tokenizer, TokenizerConfig, save, train_from_counts

    before = Tokenizer.load(home.tokenizer).sha256
    counts = collections.Counter({w: 10 + i for i, w in enumerate(["zebra", "yak", "xylophone", "walrus", "vole"])})
    config = TokenizerConfig(vocab_size=40)
    save(home.tokenizer, train_from_counts(counts, config), config, {})  # valid, but not the checkpoint's
    assert Tokenizer.load(home.tokenizer).sha256 != before
    with pytest.raises(run_setup.TrainError, match="--fresh") as info:
        program.run(home, _config(), rounds=3)
    assert str(home.tokenizer / "spm.model") in str(info.value), str(info.value)


def test_fedkb_train_refuses_a_damaged_checkpoint_without_a_traceback(home):
    DAMAGE["data-truncated"](home.state / CHECKPOINT)
    proc = fedkb(home.root, "train", "--rounds", "3", *TRAIN_ARGS)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("fedkb: error: ") and str(home.state / CHECKPOINT) in proc.stderr
