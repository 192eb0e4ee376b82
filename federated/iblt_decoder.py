"""A faster decoder for TFF's IBLT sketches: the same result, peeled in parallel rounds.

``tff.analytics.heavy_hitters.iblt.build_iblt_computation`` takes a ``decode_iblt_fn``; its
default (``iblt_tensor.decode_iblt_tensor_tf``) peels one string per ``tf.while_loop`` step and
copies the whole table at every step (``tensor_scatter_nd_update``), so decoding n strings at
capacity c costs about n * c: 10,664 bigrams at capacity 12,000 took 30 s on this machine, and the
n-gram sketches hold several times that. This decoder runs the same peeling algorithm on whole
sets of cells: each round finds every pure cell among those that changed in the round before
(all non-empty cells at first), decodes their strings at once, and subtracts all of them from
the table in one scatter. A round costs the cells it looks at, so the whole decode is about
linear in n; peeling ends in a few dozen rounds when the sketch is within capacity.

Cell purity is tested exactly as TFF does (count != 0, the chunks divided by the count decode to
a string whose salted hash check matches), plus one more test TFF leaves out: the cell must be
one of the decoded string's own hash positions, which rules out the rare check collision
decoding a string nobody inserted. The decoder reuses TFF's own chunker, hashers and hash check
(``IbltTensorDecoder``'s parts), so it reads exactly the sketches TFF's encoder writes; the
tests check it against TFF's decoder on the same sketches.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow_federated.python.analytics.heavy_hitters.iblt import chunkers, iblt_lib, iblt_tensor


def _mod_inverse(x: tf.Tensor, p: int) -> tf.Tensor:
    """x^(p-2) mod p, elementwise: the inverse modulo the prime field size (operands < 2^31, products < 2^62)."""
    result, base, e = tf.ones_like(x), x % p, p - 2
    while e:
        if e & 1:
            result = result * base % p
        base = base * base % p
        e >>= 1
    return result


def decode_iblt_parallel(
    *,
    iblt: tf.Tensor,
    iblt_values: tf.Tensor,
    capacity: int,
    string_max_bytes: int,
    value_shape,
    encoding=chunkers.CharacterEncoding.UTF8,
    seed: int = 0,
    repetitions: int = iblt_lib.DEFAULT_REPETITIONS,
    hash_family=None,
    hash_family_params=None,
    field_size: int = iblt_lib.DEFAULT_FIELD_SIZE,
):
    """Drop-in for ``iblt_tensor.decode_iblt_tensor_tf``: ``(strings, counts, values, num_not_decoded)``.

    ``counts`` is the IBLT count field of each string (how many clients inserted it), ``values``
    the summed value tensor of each, ``num_not_decoded`` the count left in the table afterwards.
    The order of the strings is not TFF's (which is random anyway: it peels from a shuffle queue).
    """
    parts = iblt_tensor.IbltTensorDecoder(
        iblt=iblt, iblt_values=iblt_values, value_shape=value_shape, capacity=capacity,
        string_max_bytes=string_max_bytes, encoding=encoding, seed=seed, repetitions=repetitions,
        hash_family=hash_family, hash_family_params=hash_family_params, field_size=field_size,
    )
    reps, size, chunks_n = repetitions, parts.table_size, parts.num_chunks
    count_col, check_col = parts.count, parts.check
    p = field_size
    width = int(parts.num_values)
    table = tf.math.floormod(tf.reshape(tf.cast(iblt, tf.int64), [reps * size, chunks_n + 2]), p)
    values = tf.reshape(iblt_values, [reps * size, width])
    offsets = tf.range(reps, dtype=tf.int64) * size  # flat row of (repetition r, index 0)

    def cond(table, values, cells, *outputs):
        return tf.size(cells) > 0

    def body(table, values, cells, out_strings, out_counts, out_values, rounds):
        rows = tf.gather(table, cells)
        count = rows[:, count_col]
        chunks = rows[:, :chunks_n] * _mod_inverse(count, p)[:, None] % p
        strings = parts.chunker.decode_tensorflow(chunks)
        check = tf.reshape(parts._get_hash_check(strings), [-1])  # TFF's salted hash check
        positions = tf.cast(parts.hyperedge_hasher.get_hash_indices_tf(strings)[:, :, 2], tf.int64)  # [n, reps]
        own_cell = tf.equal(tf.gather(positions + offsets, cells // size, batch_dims=1), cells)
        pure = (tf.strings.length(strings) > 0) & tf.equal(rows[:, check_col], count * check % p) & own_cell
        found = tf.where(pure)[:, 0]
        keys, slot = tf.unique(tf.gather(strings, found))  # a string can be pure in several repetitions
        first = tf.math.unsorted_segment_min(tf.range(tf.size(slot), dtype=tf.int64), slot, tf.size(keys))
        at = tf.gather(found, first)
        count, check = tf.gather(count, at), tf.gather(check, at)
        removal = tf.concat(  # what the string put in each of its cells: chunks, count, check, times its count
            [tf.gather(chunks, at) * count[:, None] % p, count[:, None], (count * check % p)[:, None]], 1)
        key_values = tf.gather(tf.gather(values, cells), at)
        rows_hit = tf.reshape(tf.gather(positions, at) + offsets, [-1, 1])
        table = tf.math.floormod(tf.tensor_scatter_nd_sub(table, rows_hit, tf.repeat(removal, reps, axis=0)), p)
        values = tf.tensor_scatter_nd_sub(values, rows_hit, tf.repeat(key_values, reps, axis=0))
        touched, _ = tf.unique(tf.reshape(rows_hit, [-1]))
        cells = tf.boolean_mask(touched, tf.not_equal(tf.gather(table[:, count_col], touched), 0))
        return (table, values, cells, out_strings.write(rounds, keys), out_counts.write(rounds, count),
                out_values.write(rounds, key_values), rounds + 1)

    def array(dtype, shape):
        return tf.TensorArray(dtype, size=0, dynamic_size=True, infer_shape=False, element_shape=shape)

    start = tf.where(tf.not_equal(table[:, count_col], 0))[:, 0]
    table, _, _, out_strings, out_counts, out_values, _ = tf.while_loop(
        cond, body,
        (table, values, start, array(tf.string, [None]), array(tf.int64, [None]),
         array(values.dtype, [None, width]), tf.constant(0)),
        shape_invariants=(table.shape, values.shape, tf.TensorShape([None]), tf.TensorShape(None),
                          tf.TensorShape(None), tf.TensorShape(None), tf.TensorShape([])),
    )
    num_not_decoded = tf.cast(tf.reduce_sum(table[:, count_col]) / reps, tf.int64)
    strings = tf.cond(out_strings.size() > 0, out_strings.concat, lambda: tf.constant([], tf.string))
    counts = tf.cond(out_counts.size() > 0, out_counts.concat, lambda: tf.constant([], tf.int64))
    tensor_values = tf.cond(out_values.size() > 0, out_values.concat, lambda: tf.zeros([0, width], values.dtype))
    return strings, counts, tf.reshape(tensor_values, [-1, *value_shape]), num_not_decoded
