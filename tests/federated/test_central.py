"""The central training loop's data stream and loss curve, worked out by hand (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from federated.central import example_batches, loss_curve, take_token_budget, target_tokens


def _examples() -> np.ndarray:
    """Four examples with 3, 1, 2 and 0 target tokens; the first column is the first input."""
    return np.array([[2, 5, 6, 7], [2, 5, 0, 0], [2, 5, 6, 0], [2, 0, 0, 0]], np.int32)


def test_target_tokens_count_non_padding_targets():
    assert target_tokens(_examples()).tolist() == [3, 1, 2, 0]


def test_a_token_budget_ends_with_the_example_that_reaches_it():
    examples = _examples()
    order = np.random.default_rng(7).permutation(4)  # the stream's first pass
    tokens = target_tokens(examples)[order]
    budget = int(tokens[:2].sum())  # reached exactly by the second example of the pass
    batches = list(example_batches(examples, 3, seed=7, token_budget=budget))
    assert [len(b) for b in batches] == [2]
    np.testing.assert_array_equal(batches[0], examples[order[:2]])


def test_batches_span_passes_and_the_last_may_be_short():
    examples = _examples()  # 6 tokens a pass
    batches = list(example_batches(examples, 3, seed=0, token_budget=10))
    rng = np.random.default_rng(0)
    first, second = rng.permutation(4), rng.permutation(4)
    cum = 6 + np.cumsum(target_tokens(examples)[second])
    cut = int(np.searchsorted(cum, 10)) + 1
    expected = np.concatenate([first, second[:cut]])
    assert [len(b) for b in batches] == [3] * (len(expected) // 3) + ([len(expected) % 3] if len(expected) % 3 else [])
    np.testing.assert_array_equal(np.concatenate(batches), examples[expected])
    np.testing.assert_array_equal(take_token_budget(examples, 10, seed=0), examples[expected])
    assert target_tokens(np.concatenate(batches)).sum() >= 10


def test_without_a_budget_the_stream_goes_on():
    stream = example_batches(_examples(), 3, seed=0)
    assert sum(len(next(stream)) for _ in range(10)) == 30


def test_no_examples_is_an_error():
    with pytest.raises(ValueError, match="no training examples"):
        next(example_batches(np.zeros((0, 4), np.int32), 2, seed=0))


def test_loss_curve_pools_batches_weighted_by_tokens():
    batches = [(10, 4.0), (30, 2.0), (20, 1.0), (20, 3.0)]
    assert loss_curve(batches, points=2) == [(40, 2.5), (80, 2.0)]  # (40+60)/40, (20+60)/40
    assert loss_curve(batches, points=10) == [(10, 4.0), (40, 2.0), (60, 1.0), (80, 3.0)]
    assert loss_curve([]) == []
