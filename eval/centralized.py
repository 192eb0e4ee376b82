"""The centralized LSTM reference: the same model trained with plain Keras on pooled data.

This reads every device's train split into one place, which a private keyboard must never do;
it exists only to measure how close federated training comes to centralized training with the
same number of training tokens (Gboard: 16.4 % federated vs 16.5 % server-trained recall@1).
The training loop is the product's own central loop (``federated/central.py``, which public
pretraining uses); only the pooled data makes this a reference.
"""

from __future__ import annotations

import numpy as np

from federated.central import fit, take_token_budget
from lm.config import ModelConfig

__all__ = ["take_token_budget", "train_centralized"]


def train_centralized(
    config: ModelConfig, examples: np.ndarray, token_budget: int, *, batch_size: int = 32,
    learning_rate: float = 2e-3, seed: int = 0,
) -> dict[str, np.ndarray]:
    """Trains the model with Keras (Adam, one pass over ``token_budget`` tokens); returns named weights."""
    return fit(config, examples, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
               token_budget=token_budget).weights
