"""Central Keras training of the next-word model on one array of examples.

Two users: public pretraining (``federated/pretrain.py``, part of the product: it trains on public
text only) and the centralized reference (``eval/centralized.py``, which pools the devices' text
and exists only as a measurement). Both train the same way: Adam on shuffled passes over the
examples, one batch after another, until a token budget or a wall-clock budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from lm.config import ModelConfig
from tokenizer.specials import PAD_ID

CURVE_POINTS = 100  # points kept of the loss curve, whatever the number of batches


@dataclass(frozen=True)
class FitResult:
    weights: dict[str, np.ndarray]  # by stable name, as ``lm.model.named_weights``
    tokens: int  # non-padding target tokens trained on
    batches: int
    seconds: float  # wall clock of the training loop, the first batch's graph building included
    stopped_by: str  # "tokens" or "seconds"
    # (tokens trained so far, mean loss per token over the batches since the previous point)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)


def target_tokens(examples: np.ndarray) -> np.ndarray:
    """Non-padding target tokens of each example."""
    return (examples[:, 1:] != PAD_ID).sum(axis=1)


def example_batches(examples: np.ndarray, batch_size: int, seed: int,
                    token_budget: int | None = None) -> Iterator[np.ndarray]:
    """Batches of shuffled passes over ``examples``, one pass after another (a batch may span two).

    With ``token_budget`` the stream ends with the example whose target tokens reach it (the last
    batch may be short); without, it never ends.
    """
    if len(examples) == 0:
        raise ValueError("no training examples")
    rng = np.random.default_rng(seed)
    tokens = target_tokens(examples)
    carry, used = np.zeros(0, np.int64), 0
    while True:
        order = rng.permutation(len(examples))
        last = False
        if token_budget is not None:
            cum = used + np.cumsum(tokens[order])
            if cum[-1] >= token_budget:
                order, last = order[: int(np.searchsorted(cum, token_budget, side="left")) + 1], True
            used = int(cum[len(order) - 1])
        order = np.concatenate([carry, order])
        full = len(order) // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield examples[order[start : start + batch_size]]
        carry = order[full:]
        if last:
            if len(carry):
                yield examples[carry]
            return


def take_token_budget(examples: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """The examples ``example_batches`` would train on for ``budget`` tokens, in order."""
    return np.concatenate(list(example_batches(examples, len(examples), seed, budget)))


def fit(
    config: ModelConfig, examples: np.ndarray, *, batch_size: int, learning_rate: float, seed: int,
    token_budget: int | None = None, seconds: float | None = None,
    on_batch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Trains a freshly built model with Keras (Adam) until ``token_budget`` tokens or ``seconds`` are spent.

    ``on_batch(tokens_so_far, elapsed_seconds)`` is called after every batch (for a progress bar).
    """
    if token_budget is None and seconds is None:
        raise ValueError("give a token budget, a wall-clock budget, or both")
    import tensorflow as tf

    from lm.model import build_model, named_weights

    tf.keras.utils.set_random_seed(seed)
    model = build_model(config, seed=seed)
    step = train_step(model, tf.keras.optimizers.Adam(learning_rate), config.sequence_length)
    trained, losses, stopped_by = 0, [], "tokens"
    start = time.perf_counter()
    for batch in example_batches(examples, batch_size, seed, token_budget):
        loss = float(step(batch[:, :-1], batch[:, 1:]))
        n = int(target_tokens(batch).sum())
        trained += n
        losses.append((n, loss))
        elapsed = time.perf_counter() - start
        if on_batch is not None:
            on_batch(trained, elapsed)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss} after {trained:,} tokens; "
                                     f"lower the learning rate ({learning_rate})")
        if seconds is not None and elapsed >= seconds:
            stopped_by = "seconds"
            break
    return FitResult(named_weights(model), trained, len(losses), time.perf_counter() - start, stopped_by,
                     loss_curve(losses))


def train_step(model, optimizer, sequence_length: int):
    """One Adam step on a batch, as ``Model.fit`` takes it (same loss, same update), returning the loss.

    Written out because ``train_on_batch`` costs twice the time of the step itself on this model,
    and ``fit`` cannot stop on the clock or report each batch's own loss.
    """
    import tensorflow as tf

    from lm.model import MaskedCrossEntropy

    loss_fn = MaskedCrossEntropy()
    spec = tf.TensorSpec([None, sequence_length], tf.int32)  # any batch size: the last one may be short

    @tf.function(input_signature=[spec, spec])
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def loss_curve(batches: list[tuple[int, float]], points: int = CURVE_POINTS) -> list[tuple[int, float]]:
    """Per-batch ``(tokens, mean loss)`` pooled into at most ``points`` token-weighted means."""
    if not batches:
        return []
    out, seen = [], 0
    for chunk in np.array_split(np.asarray(batches, dtype=np.float64).reshape(-1, 2), min(points, len(batches))):
        if len(chunk):
            seen += int(chunk[:, 0].sum())
            out.append((seen, float((chunk[:, 0] * chunk[:, 1]).sum() / max(chunk[:, 0].sum(), 1))))
    return out
