"""The parallel IBLT decoder gives what TFF's own decoder gives, on sketches TFF's encoder wrote."""

from __future__ import annotations

import collections

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # imports TensorFlow Federated (no runtime started)


def _sketch(device_lists, *, capacity, max_bytes=32, seed=0):
    """Every device's sketch as TFF's client step builds it (value = the device's count), summed."""
    import tensorflow as tf
    from tensorflow_federated.python.analytics.heavy_hitters.iblt import iblt_tensor

    encoder = iblt_tensor.IbltTensorEncoder(capacity=capacity, string_max_bytes=max_bytes, repetitions=3,
                                            value_shape=(1,), seed=seed)
    total = None
    for items in device_lists:
        keys, _, counts = tf.unique_with_counts(tf.constant(items, tf.string))
        sketch = encoder.compute_iblt(keys, tf.reshape(tf.cast(counts, tf.int64), [-1, 1]))
        total = sketch if total is None else (total[0] + sketch[0], total[1] + sketch[1])
    return total


def _decode(fn, sketch, *, capacity, max_bytes=32, seed=0):
    import tensorflow as tf

    strings, devices, values, left = tf.function(fn)(iblt=sketch[0], iblt_values=sketch[1], capacity=capacity,
                                                     string_max_bytes=max_bytes, value_shape=(1,), repetitions=3,
                                                     seed=seed)
    decoded = {s.decode(): (int(d), int(v[0])) for s, d, v in zip(strings.numpy(), devices.numpy(), values.numpy())}
    assert len(decoded) == len(strings)  # no string twice
    return decoded, int(left)


def _truth(device_lists):
    truth = collections.defaultdict(lambda: [0, 0])
    for items in device_lists:
        for key, count in collections.Counter(items).items():
            truth[key][0] += 1
            truth[key][1] += count
    return {k: tuple(v) for k, v in truth.items()}


def _devices(n_devices, vocabulary, per_device, seed):
    rng = np.random.default_rng(seed)
    words = [f"w{i} x{i % 7}" for i in range(vocabulary)] + ["naïve", "日本語 ok"]
    return [list(rng.choice(words, size=per_device)) for _ in range(n_devices)]


@pytest.mark.parametrize("capacity, vocabulary", [(300, 250), (2_000, 1_500)])
def test_decodes_exactly_what_tff_decodes_within_capacity(capacity, vocabulary):
    from tensorflow_federated.python.analytics.heavy_hitters.iblt import iblt_tensor

    from federated.iblt_decoder import decode_iblt_parallel

    lists = _devices(40, vocabulary, 60, seed=capacity)
    sketch = _sketch(lists, capacity=capacity)
    ours, left = _decode(decode_iblt_parallel, sketch, capacity=capacity)
    theirs, tff_left = _decode(iblt_tensor.decode_iblt_tensor_tf, sketch, capacity=capacity)
    assert ours == theirs == _truth(lists)  # (devices, summed count) per string
    assert left == tff_left == 0


def test_an_overloaded_sketch_decodes_the_same_part_as_tff():
    from tensorflow_federated.python.analytics.heavy_hitters.iblt import iblt_tensor

    from federated.iblt_decoder import decode_iblt_parallel

    lists = _devices(30, 900, 60, seed=7)  # ~900 distinct strings into capacity 400
    sketch = _sketch(lists, capacity=400)
    ours, left = _decode(decode_iblt_parallel, sketch, capacity=400)
    theirs, tff_left = _decode(iblt_tensor.decode_iblt_tensor_tf, sketch, capacity=400)
    assert ours == theirs and left == tff_left > 0  # peeling stops at the same 2-core of the hypergraph
    truth = _truth(lists)
    assert all(truth[k] == v for k, v in ours.items())


def test_an_empty_sketch_decodes_to_nothing():
    import tensorflow as tf
    from tensorflow_federated.python.analytics.heavy_hitters.iblt import iblt_tensor

    from federated.iblt_decoder import decode_iblt_parallel

    empty = iblt_tensor.IbltTensorEncoder(capacity=100, string_max_bytes=32, repetitions=3, value_shape=(1,), seed=0)
    sketch = empty.compute_iblt(tf.constant([], tf.string), tf.zeros([0, 1], tf.int64))
    assert _decode(decode_iblt_parallel, sketch, capacity=100) == ({}, 0)
