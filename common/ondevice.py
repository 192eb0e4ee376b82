"""The on-device copy of a model's weights: int8 with one scale per output channel.

A published version carries its float weights (``weights.npz``, which training, personalization
and the server read) and, for the keyboard, ``ondevice.npz``: every matrix stored as int8 with a
symmetric scale per output channel, the scales and the bias vectors in float16. For the
``gboard`` preset that is 1.46 MB against 5.7 MB, whatever the weights (the archive is not
compressed, so its size is fixed by the shapes and it loads without inflating). The device
multiplies the scales back in once when it loads the model and then computes in float32 as
before, so only the weights are rounded (no activation quantization), which keeps recall within
a rounding error of the float model. numpy only: the server writes the file and the device reads
it with the same code.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from common.version_dir import read_arrays

FORMAT = "int8, symmetric, one float16 scale per output channel; vectors float16"
# The output channel of each matrix: the tied embedding's rows are both the pieces looked up and
# the logits produced, so one scale per piece; Keras kernels are [inputs, outputs].
CHANNEL_AXIS = {"embedding/embeddings": 0}
_Q, _SCALE = ".int8", ".scale"


def quantize_matrix(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``w`` ≈ ``q * scale`` with ``q`` int8 in [-127, 127] and one ``scale`` per index of ``axis``."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w).max(axis=1 - axis, keepdims=True)
    # At least float16's smallest normal number, so that a near-zero channel keeps a usable scale;
    # the scale is rounded to float16 first, so the int8 values are chosen for the scale stored.
    scale = np.maximum(amax / 127.0, np.finfo(np.float16).tiny).astype(np.float16)
    q = np.clip(np.rint(w / scale.astype(np.float32)), -127, 127).astype(np.int8)
    return q, scale


def quantize(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Named float weights -> the arrays stored in ``ondevice.npz``."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        w = np.asarray(w)
        if w.ndim != 2:
            out[name] = w.astype(np.float16)  # biases: 3 significant digits is far finer than int8 weights
            continue
        out[name + _Q], out[name + _SCALE] = quantize_matrix(w, CHANNEL_AXIS.get(name, 1))
    return out


def dequantize(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of ``ondevice.npz`` -> named float32 weights (what the device computes with)."""
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if key.endswith(_SCALE):
            continue
        if key.endswith(_Q):
            name = key[: -len(_Q)]
            if name + _SCALE not in arrays:
                raise ValueError(f"on-device weights: {key!r} has no {name + _SCALE!r}")
            out[name] = value.astype(np.float32) * arrays[name + _SCALE].astype(np.float32)
        else:
            out[key] = np.asarray(value, np.float32)
    return out


def to_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """The content of ``ondevice.npz`` for named float weights."""
    buf = io.BytesIO()
    np.savez(buf, **quantize(weights))
    return buf.getvalue()


def load(path: Path) -> dict[str, np.ndarray]:
    """Named float32 weights from an ``ondevice.npz`` file (verify the version first)."""
    return dequantize(read_arrays(path))
