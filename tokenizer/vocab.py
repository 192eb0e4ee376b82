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

import sentencepiece as spm

from fedkb.atomic import atomic_write

from tokenizer.specials import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, UNK, UNK_ID, WORD_START

MODEL_FILE = "spm.model"
CONFIG_FILE = "tokenizer.json"


class TokenizerError(Exception):
    """No tokenizer, a damaged one, or too few words to train one."""


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8000  # pieces asked for, specials included; fewer if the counts cannot fill it
    model_type: str = "unigram"  # subword pieces, so a rare word is still spelled, not <unk>
    character_coverage: float = 0.9995  # rarer characters become <unk>
    max_word_types: int = 2_000_000  # distinct words read from the summed table, most frequent first

    def __post_init__(self) -> None:
        if self.vocab_size < 16:
            raise ValueError(f"vocab_size must be at least 16, got {self.vocab_size}")
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"model_type must be 'unigram' or 'bpe', got {self.model_type!r}")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ValueError(f"character_coverage must be in [0.9, 1], got {self.character_coverage}")


def train_from_counts(counts: Mapping[str, int], config: TokenizerConfig = TokenizerConfig()) -> bytes:
    """Trains a SentencePiece model on a word-count table; returns the serialized model."""
    words = [(w, c) for w, c in counts.items() if c > 0 and w and "\t" not in w and not w.isspace()]
    if len(words) < 4:
        raise TokenizerError(f"only {len(words)} distinct words were counted; type or seed more text first")
    words.sort(key=lambda wc: (-wc[1], wc[0]))
    words = words[: config.max_word_types]
    model = io.BytesIO()
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
    return model.getvalue()


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
        if (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id()) != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise TokenizerError(f"{source}: special-token ids differ from tokenizer/specials.py")
        self.model_proto = model_proto

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        """Loads ``spm.model`` from a tokenizer directory, or a model file itself."""
        path = Path(path)
        file = path / MODEL_FILE if path.is_dir() else path
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise TokenizerError(f"no tokenizer at {file}; run `fedkb tokenizer train` first") from None
        return cls(data, source=str(file))

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

    def piece(self, piece_id: int) -> str:
        return self._sp.id_to_piece(piece_id)

    def starts_word(self, piece_id: int) -> bool:
        return self._sp.id_to_piece(piece_id).startswith(WORD_START)


def save(directory: Path, model_proto: bytes, config: TokenizerConfig, provenance: Mapping[str, object]) -> Tokenizer:
    """Writes ``spm.model`` and ``tokenizer.json`` (config, actual size, sha256, provenance)."""
    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(model_proto)
    atomic_write(directory / MODEL_FILE, model_proto)
    meta = {"config": asdict(config), "vocab_size": tok.vocab_size, "sha256": tok.sha256, **provenance}
    atomic_write(directory / CONFIG_FILE, json.dumps(meta, indent=2).encode())
    return Tokenizer.load(directory)

