"""The next-word model's configuration: one frozen dataclass and its presets (no TensorFlow here)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from common.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the model; saved with every checkpoint and published version."""

    vocab_size: int  # pieces in the tokenizer, specials included; the output layer has this many logits
    embedding_dim: int = 96  # input embedding = recurrent projection = tied output embedding
    lstm_units: int = 670  # cell size of the (CIFG) LSTM
    cifg: bool = True  # coupled input-forget gate (Gboard's CIFG: 3 gates); False = plain 4-gate LSTM
    sequence_length: int = 32  # tokens per training example (longer sentences are cut into pieces)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "lstm_units", "sequence_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.vocab_size < 8:
            raise ConfigError(f"ModelConfig.vocab_size must be at least 8, got {self.vocab_size}")

    @property
    def gates(self) -> int:
        return 3 if self.cifg else 4

    def parameter_count(self) -> int:
        """Trainable parameters, computed from the sizes (tests check it against Keras)."""
        e, u = self.embedding_dim, self.lstm_units
        embedding = self.vocab_size * e
        cell = (e + e) * self.gates * u + self.gates * u + u * e  # gates over [x; h], bias, projection
        return embedding + cell + self.vocab_size  # + output bias

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))


# Hard et al. 2018 (arXiv 1811.03604): 10K vocabulary, 96-dim embedding, CIFG with 670 units and
# a 96-dim projection, output tied to the input embedding: about 1.4M parameters.
PRESETS: dict[str, ModelConfig] = {
    # For tests and smoke runs: seconds per round even on one core; it learns little.
    "tiny": ModelConfig(vocab_size=256, embedding_dim=16, lstm_units=32, sequence_length=16),
    "small": ModelConfig(vocab_size=8000, embedding_dim=64, lstm_units=256),
    "gboard": ModelConfig(vocab_size=10000, embedding_dim=96, lstm_units=670),
}


def preset(name: str, *, vocab_size: int | None = None) -> ModelConfig:
    """A preset, with the vocabulary size of the tokenizer actually trained."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return base if vocab_size is None else replace(base, vocab_size=vocab_size)
