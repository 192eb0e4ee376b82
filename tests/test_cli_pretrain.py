"""``fedkb pretrain`` and ``fedkb tokenizer train --pieces`` from the command line."""

from tests.cli_runner import fedkb
from tests.conftest import synthetic_corpus
from tests.federated.test_pretrain import public_corpus


def _fedkb(home, *args):
    return fedkb(home, *args)


def test_pieces_from_public_text_then_pretrain(tmp_path):
    home, public = tmp_path / "home", public_corpus(tmp_path / "pub.txt.gz")
    missing = _fedkb(home, "pretrain", "--corpus", str(public), "--preset", "tiny")
    assert missing.returncode == 1 and "fedkb tokenizer train" in missing.stderr and "Traceback" not in missing.stderr
    wrong = _fedkb(home, "tokenizer", "train", "--public-corpus", str(public))
    assert wrong.returncode == 1 and "--pieces public or --pieces both" in wrong.stderr
    tok = _fedkb(home, "tokenizer", "train", "--pieces", "public", "--public-corpus", str(public), "--vocab-size", "40")
    assert tok.returncode == 0, tok.stderr
    assert f"from the word counts of the public corpus {public}" in tok.stdout
    out = _fedkb(home, "pretrain", "--corpus", str(public), "--preset", "tiny", "--tokens", "3000", "--seed", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Pretrained the tiny model" in out.stdout and "(tokens ran out first)" in out.stdout
    assert (home / "server" / "pretrained" / "weights.npz").is_file()


def test_bad_public_text_is_one_line_error(tmp_path):
    home = tmp_path / "home"
    corpus = synthetic_corpus(tmp_path / "c.jsonl", users=5)
    assert _fedkb(home, "population", "seed", "--corpus", str(corpus)).returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    out = _fedkb(home, "tokenizer", "train", "--plain", "--pieces", "both", "--public-corpus", str(bad))
    assert out.returncode == 1 and f'{bad}:2: missing "text"' in out.stderr and "Traceback" not in out.stderr
