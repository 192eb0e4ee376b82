"""The vocabulary: a SentencePiece model trained from word counts, never from sentences.

Devices count the words of their own train split; the server sums those counts and trains
SentencePiece on the table ``word<TAB>count`` (SentencePiece's ``input_format="tsv"``). The
model and its config are saved under ``<home>/server/tokenizer/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from common.atomic import atomic_write
from common.errors import ConfigError, FedkbError
from common.layout import TOKENIZER_MODEL
from tokenizer.specials import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, UNK, UNK_ID

MODEL_FILE = TOKENIZER_MODEL
CONFIG_FILE = "tokenizer.json"


class TokenizerError(FedkbError):
    """No tokenizer, a damaged one, or too few words to train one."""


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8000  # pieces asked for, specials included; fewer if the counts cannot fill it
    model_type: str = "unigram"  # subword pieces, so a rare word is still spelled, not <unk>
    character_coverage: float = 0.9995  # rarer characters become <unk>
    max_word_types: int = 2_000_000  # distinct words read from the summed table, most frequent first

    def __post_init__(self) -> None:
        if self.vocab_size < 16:
            raise ConfigError(f"vocab_size must be at least 16, got {self.vocab_size}")
        if self.model_type not in ("unigram", "bpe"):
            raise ConfigError(f"model_type must be 'unigram' or 'bpe', got {self.model_type!r}")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ConfigError(f"character_coverage must be in [0.9, 1], got {self.character_coverage}")


def train_from_counts(counts: Mapping[str, int], config: TokenizerConfig = TokenizerConfig()) -> bytes:
    """Trains a SentencePiece model on a word-count table; returns the serialized model."""
    words = [(w, c) for w, c in counts.items() if c > 0 and w and "\t" not in w and not w.isspace()]
    if len(words) < 4:
        raise TokenizerError(f"only {len(words)} distinct words were counted; type or seed more text first")
    words.sort(key=lambda wc: (-wc[1], wc[0]))
    words = words[: config.max_word_types]
    model = io.BytesIO()
    try:
        _train(words, config, model)
    except RuntimeError as exc:  # SentencePiece refuses, e.g. more distinct characters than pieces
        reason = str(exc).split("] ", 1)[-1].split(" Increase vocab_size")[0]
        raise TokenizerError(
            f"SentencePiece cannot train a {config.vocab_size}-piece {config.model_type} model on {len(words):,} "
            f"distinct words: {reason} Pass a larger --vocab-size."
        ) from None
    return model.getvalue()


def _train(words: list[tuple[str, int]], config: TokenizerConfig, model: io.BytesIO) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(f"{w}\t{c}" for w, c in words),
        input_format="tsv",
        model_writer=model,
        vocab_size=config.vocab_size,
        hard_vocab_limit=False,
        model_type=config.model_type,
        character_coverage=config.character_coverage,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
        minloglevel=2,
        num_threads=os.cpu_count() or 1,
    )


class Tokenizer:
    """Encodes text to piece ids and back; knows which pieces start a word."""

    def __init__(self, model_proto: bytes, *, source: str = "<memory>"):
        self.source = source
        self.sha256 = hashlib.sha256(model_proto).hexdigest()
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises RuntimeError or OSError here
            raise TokenizerError(f"{source}: not a SentencePiece model ({exc})") from None
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise TokenizerError(f"{source}: special-token ids differ from tokenizer/specials.py")
        self.model_proto = model_proto

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Loads ``spm.model`` from a tokenizer directory, or a model file itself.

        From a directory the model is checked against the sha256 that ``tokenizer.json`` records,
        so a damaged or swapped ``spm.model`` is refused rather than silently used.
        """
        path = Path(path)
        file = path / MODEL_FILE if path.is_dir() else path
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise TokenizerError(f"no tokenizer at {file}; run `fedkb tokenizer train` first") from None
        except OSError as exc:
            raise TokenizerError(f"{file}: cannot read ({exc.strerror or exc})") from None
        if path.is_dir():
            _check_recorded_sha256(file, path / CONFIG_FILE, hashlib.sha256(data).hexdigest())
        return cls(data, source=str(file))

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text``; raises ``TokenizerError`` for non-text or text with lone surrogates."""
        try:
            return self._sp.encode(text, out_type=int)
        except (RuntimeError, TypeError):  # pybind11 cannot pass the argument to C++: say why
            raise TokenizerError(f"{self.source}: cannot encode {_describe_bad_text(text)}") from None

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (padding and sentence markers dropped); ``TokenizerError`` for unknown ids."""
        ids = [i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)]
        try:
            return self._sp.decode(ids)
        except (IndexError, TypeError):
            raise TokenizerError(f"{self.source}: cannot decode {_describe_bad_ids(ids, self.vocab_size)}") from None

    def piece(self, piece_id: int) -> str:
        try:
            return self._sp.id_to_piece(piece_id)
        except (IndexError, TypeError):
            raise TokenizerError(f"{self.source}: {_describe_bad_ids([piece_id], self.vocab_size)}") from None


def _describe_bad_text(text: object) -> str:
    if not isinstance(text, str):
        return f"{type(text).__name__}: expected text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"text that is not valid Unicode: {text[exc.start]!r} at character {exc.start} is a lone surrogate"
    return f"text of {len(text):,} characters"


def _describe_bad_ids(ids: list, size: int) -> str:
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            return f"piece id {i!r}: expected an integer"
        if not 0 <= i < size:
            return f"piece id {i}: out of range, this tokenizer has ids 0..{size - 1}"
    return f"piece ids {ids[:8]!r}"


def _check_recorded_sha256(model_file: Path, config_file: Path, actual: str) -> None:
    """Refuses ``model_file`` when ``tokenizer.json`` beside it records another sha256."""
    try:
        recorded = json.loads(config_file.read_text(encoding="utf-8")).get("sha256")
    except FileNotFoundError:
        return  # a bare model file in a folder: nothing recorded to check against
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise TokenizerError(f"{config_file}: unreadable ({exc}); run `fedkb tokenizer train` again") from None
    if recorded is not None and recorded != actual:
        raise TokenizerError(
            f"{model_file}: sha256 does not match {config_file}; the file is damaged or was replaced. "
            "Run `fedkb tokenizer train` again (a checkpoint made with the old tokenizer then needs --fresh)"
        )


def save(directory: Path, model_proto: bytes, config: TokenizerConfig, provenance: Mapping[str, object]) -> Tokenizer:
    """Writes ``spm.model`` and ``tokenizer.json`` (config, actual size, sha256, provenance)."""
    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(model_proto)
    atomic_write(directory / MODEL_FILE, model_proto)
    meta = {"config": asdict(config), "vocab_size": tok.vocab_size, "sha256": tok.sha256, **provenance}
    atomic_write(directory / CONFIG_FILE, json.dumps(meta, indent=2).encode())
    return Tokenizer.load(directory)

