"""The centralized LSTM reference: the same model trained with plain Keras on pooled data.

This reads every device's train split into one place, which a private keyboard must never do;
it exists only to measure how close federated training comes to centralized training with the
same number of training tokens (Gboard: 16.4 % federated vs 16.5 % server-trained recall@1).
"""

from __future__ import annotations

import numpy as np

from federated.model_config import ModelConfig
from tokenizer.specials import PAD_ID


def take_token_budget(examples: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Shuffled examples (cycling through them again if needed) until ``budget`` target tokens are used."""
    if len(examples) == 0:
        raise ValueError("no training examples")
    rng = np.random.default_rng(seed)
    chosen, used = [], 0
    while used < budget:
        order = rng.permutation(len(examples))
        tokens = (examples[order, 1:] != PAD_ID).sum(axis=1)
        cum = np.cumsum(tokens)
        cut = int(np.searchsorted(cum, budget - used, side="left")) + 1
        chosen.append(examples[order[:cut]])
        used += int(cum[min(cut, len(cum)) - 1])
    return np.concatenate(chosen)


def train_centralized(
    config: ModelConfig, examples: np.ndarray, token_budget: int, *, batch_size: int = 32,
    learning_rate: float = 2e-3, seed: int = 0,
) -> dict[str, np.ndarray]:
    """Trains the model with Keras (Adam, one pass over ``token_budget`` tokens); returns named weights."""
    import tensorflow as tf

    from federated.model import MaskedCrossEntropy, build_model, named_weights

    data = take_token_budget(examples, token_budget, seed)
    tf.keras.utils.set_random_seed(seed)
    model = build_model(config, seed=seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=MaskedCrossEntropy())
    model.fit(data[:, :-1], data[:, 1:], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return named_weights(model)
