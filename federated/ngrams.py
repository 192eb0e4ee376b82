"""Privately learned word n-grams: counts of the n-grams many devices type, from TFF's IBLT heavy hitters.

The same machinery as the private vocabulary (``federated.heavy_hitters``), one round per
order, lowest first:

* On the device (``tokenizer.private_counts.device_ngram_counts``): the ``M`` most frequent
  n-grams of the order in its train split, each with its count capped at ``c``. From order 2
  on, only n-grams whose prefix and suffix of one order less were released in the round before
  are candidates (an n-gram that k devices type has both of those typed by the same k devices),
  so a device's ``M`` slots go to n-grams that can be released. ``<s>`` marks sentence starts.
* In TFF: ``tff.analytics.heavy_hitters.iblt.build_iblt_computation`` with
  ``multi_contribution=True``. The client step counts each distinct n-gram it is handed
  (``get_capped_elements_with_counts``) and sketches it once, with that count as its value;
  the sum of the sketches decodes, per n-gram, to the number of devices that sent it (the IBLT
  count field) and the sum of their capped counts (the value). ``k_anonymity`` is applied by
  TFF to the number of **devices**, not to the count: an n-gram is released only if at least
  ``k`` devices contributed it. TFF caps what it reads at ``max_words_per_user // batch_size``
  batches; a device hands one batch of at most ``M * c`` n-grams, so that is one batch.
* The decode step is ``federated.iblt_decoder.decode_iblt_parallel`` (the same peeling as TFF's
  decoder, in parallel rounds: TFF's takes minutes at these sizes). The clients of a round run in
  sequential subrounds of TFF's mergeable form, so the worker holds a few hundred MB of sketches
  at a time instead of every device's.
* With ``dp_epsilon``, the decoded counts get Gaussian noise and a threshold
  (``tokenizer.private_counts``) calibrated once for all orders (``M`` n-grams per order and
  device, counts up to ``c``): the released table is (epsilon, delta)-DP per device in the
  central model. The Gaussian parts compose exactly under the rounds' adaptivity (each order's
  candidates depend on the release before). The capacity tried (grown until the sketch decodes)
  is data-dependent and not covered, as for the vocabulary.

What this does not protect: as for the vocabulary, the sum is a plain ``federated_sum`` (TFF's
secure sum does not run in the local runtime), so whoever holds the summed sketch could decode
all of it, n-grams of one device included; k-anonymity is a release policy.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from common import artifacts
from common.atomic import atomic_write
from common.errors import ConfigError, FedkbError
from common.layout import Home
from federated.heavy_hitters import check_release_options, decode_strings
from tokenizer.private_counts import GaussianThreshold, calibrate_gaussian_threshold, device_ngram_counts, release

RECORD = "ngrams.json"
MAX_ATTEMPTS = 4  # capacity doubles after a failed decode
# Distinct n-grams devices contribute per contributed slot (devices * M), measured on the bundled
# population for M from 100 to 300: 0.08-0.10 for words, 0.34-0.37 for bigrams, 0.32-0.33 for
# trigrams. The first capacity tried is this share of devices * M, so the sketch decodes at once.
DISTINCT_SHARE = {1: 0.12, 2: 0.4}
DISTINCT_SHARE_HIGHER = 0.4
SUBROUND_SKETCH_BYTES = 256 << 20  # client sketches the worker holds at once (see ``subrounds``)


class NgramError(FedkbError):
    """The n-grams cannot be gathered: no devices, or a sketch that does not decode."""


@dataclass(frozen=True)
class NgramConfig:
    # M: a device's most frequent n-grams of each order that it contributes (as the vocabulary)
    max_per_device: int = 200
    max_count: int = 4  # c: the most one device adds to one n-gram's count
    k_anonymity: int = 2  # an n-gram is released only if at least k devices contributed it
    max_order: int = 3  # orders 1..max_order (unigrams included, so the table stands alone)
    max_bytes: int = 32  # UTF-8 bytes an n-gram may have to be contributed (IBLT string_max_bytes)
    capacity: int | None = None  # IBLT capacity of every order; None: estimated, doubled until it decodes
    dp_epsilon: float | None = None  # None: no noise; else Gaussian thresholding at this epsilon, all orders together
    dp_delta: float = 1e-6  # delta of the DP release

    def __post_init__(self) -> None:
        for name in ("max_per_device", "max_count", "k_anonymity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.max_order <= 5:
            raise ConfigError(f"max_order must be in [1, 5], got {self.max_order}")
        if not 1 <= self.max_bytes <= 1024:
            raise ConfigError(f"max_bytes must be in [1, 1024], got {self.max_bytes}")
        check_release_options(self.capacity, self.dp_epsilon, self.dp_delta)

    @property
    def orders(self) -> range:
        return range(1, self.max_order + 1)


@dataclass(frozen=True)
class OrderRound:
    """How one order was gathered."""

    order: int
    released: int  # n-grams released (at or over k devices, and over the DP threshold if any)
    capacity: int  # the IBLT capacity that decoded
    attempts: int  # federated rounds run for this order (one per capacity tried)
    subrounds: int  # sequential client groups per round
    seconds: float


@dataclass(frozen=True)
class NgramTable:
    """What the server learned: each released n-gram's summed capped count (noisy under DP)."""

    counts: artifacts.NgramCounts
    devices: int
    rounds: tuple[OrderRound, ...]
    mechanism: GaussianThreshold | None
    seconds: float
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_bytes(self) -> bytes:
        return artifacts.ngrams_to_bytes(self.counts)

    def record(self, config: NgramConfig, sha256: str) -> dict:
        """The JSON record saved next to the table: settings, devices, counts, time, and what left the devices."""
        return {
            "file": artifacts.NGRAMS, "sha256": sha256, "created": self.created,
            "config": asdict(config), "devices": self.devices,
            "counts_per_order": {str(o): len(self.counts.get(o, {})) for o in config.orders},
            "rounds": [asdict(r) | {"seconds": round(r.seconds, 1)} for r in self.rounds],
            "seconds": round(self.seconds, 1),
            "privacy": {
                "left_devices": f"each device's {config.max_per_device} most frequent n-grams of each order "
                                f"1-{config.max_order} in its train split (from order 2, only n-grams extending "
                                f"released ones), each with its count capped at {config.max_count}, as IBLT sketches",
                "computation": "tff.analytics.heavy_hitters.iblt.build_iblt_computation (multi_contribution=True), "
                               "decoded by federated.iblt_decoder.decode_iblt_parallel",
                "aggregation": "federated_sum (plain: TFF's secure sum does not run in the local C++ runtime)",
                "max_per_device": config.max_per_device, "max_count": config.max_count,
                "k_anonymity": config.k_anonymity, "k_anonymity_counts": "devices",
                "capacity_fixed": config.capacity is not None,
                "dp": self.mechanism.describe() if self.mechanism else None,
            },
        }


def client_dataset(counts: Mapping[str, int]):
    """One device's n-grams, each repeated its (capped) count, as the single string batch the client step reads."""
    import tensorflow as tf

    items = [gram for gram, count in counts.items() for _ in range(count)]
    tensor = tf.constant(items, tf.string) if items else tf.constant([], tf.string)
    return tf.data.Dataset.from_tensor_slices(tensor).batch(max(1, len(items)))


@functools.lru_cache(maxsize=16)
def iblt_computation(*, capacity: int, max_items: int, max_bytes: int, k_anonymity: int):
    """TFF's heavy-hitters computation counting what each device contributes, with the parallel decoder."""
    import tensorflow_federated as tff

    from federated.iblt_decoder import decode_iblt_parallel

    return tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=capacity, string_max_bytes=max_bytes,
        max_words_per_user=max_items, batch_size=max_items,  # one batch of <= max_items per device
        multi_contribution=True,  # a device's count of each n-gram, not 1
        k_anonymity=k_anonymity, secure_sum_bitwidth=None, decode_iblt_fn=decode_iblt_parallel,
    )


def initial_capacity(config: NgramConfig, order: int, devices: int) -> int:
    """The first capacity to try: the expected distinct n-grams, never above devices * M (always enough)."""
    if config.capacity is not None:
        return config.capacity
    slots = devices * config.max_per_device
    share = DISTINCT_SHARE.get(order, DISTINCT_SHARE_HIGHER)
    return max(1, min(slots, max(1_000, math.ceil(share * slots))))


def subrounds(capacity: int, max_bytes: int, devices: int) -> int:
    """Client groups per round so that one group's sketches stay near ``SUBROUND_SKETCH_BYTES``.

    A device's sketch is dense: 3 repetitions x ~1.34 capacity cells x (max_bytes / 3 + 3) int64s
    (TFF's table sizing and UTF-8 chunking), about 6 MB at capacity 40,000; TFF holds every
    client's before it sums them.
    """
    sketch = 1.1 * 1.222 * capacity * (max_bytes / 3 + 3) * 8
    return max(1, min(devices, math.ceil(devices * sketch / SUBROUND_SKETCH_BYTES)))


def discover_order(
    contributions: Sequence[Mapping[str, int]], config: NgramConfig, order: int, *, target: str | None = None
) -> tuple[dict[str, int], OrderRound]:
    """Runs one order's heavy-hitters rounds over the devices' contributions; returns the decoded counts (>= k devices).

    With ``target`` (a worker's ``host:port``), the round runs in subrounds on that worker;
    otherwise in the current default context.
    """
    import tensorflow_federated as tff

    from federated.runtime import connect_context

    started = time.monotonic()
    datasets = [client_dataset(c) for c in contributions]
    capacity = initial_capacity(config, order, len(datasets))
    attempts = MAX_ATTEMPTS if config.capacity is None else 1
    slots = len(datasets) * config.max_per_device
    for attempt in range(1, attempts + 1):
        groups = subrounds(capacity, config.max_bytes, len(datasets))
        if target is not None:
            tff.framework.set_default_context(connect_context([target], subrounds=groups if groups > 1 else None))
        computation = iblt_computation(capacity=capacity, max_items=config.max_per_device * config.max_count,
                                       max_bytes=config.max_bytes, k_anonymity=config.k_anonymity)
        out = computation(datasets)
        if int(out.num_not_decoded) == 0:
            break
        if attempt == attempts:
            raise NgramError(
                f"the summed IBLT sketch of order {order} did not decode at capacity {capacity} "
                f"({int(out.num_not_decoded)} counts left); pass a larger capacity")
        capacity = min(2 * capacity, max(slots, capacity + 1))
    decoded = decode_strings(out.heavy_hitters, out.heavy_hitters_counts)
    return decoded, OrderRound(order, len(decoded), capacity, attempt, groups, time.monotonic() - started)


def mechanism_for(config: NgramConfig) -> GaussianThreshold | None:
    """One Gaussian thresholding release for all orders: a device adds up to c to M n-grams of each order."""
    if config.dp_epsilon is None:
        return None
    return calibrate_gaussian_threshold(config.dp_epsilon, config.dp_delta, config.max_per_device * config.max_order,
                                        config.k_anonymity, max_count=config.max_count)


def gather_ngrams(home: Home, config: NgramConfig, *, rng: np.random.Generator | None = None) -> NgramTable:
    """Gathers the private n-gram table from every device (in a TFF runtime of its own) and saves it."""
    table = collect(home, config, rng=rng)
    save(home, table, config)
    return table


def collect(home: Home, config: NgramConfig, *, rng: np.random.Generator | None = None) -> NgramTable:
    """Runs the rounds and returns the released table, without saving it.

    Each order is one round: the devices compute their contributions on their own train splits
    (given the n-grams released for the order before), TFF sums and decodes the sketches, the
    server releases (with DP noise if asked) and sends the released set on to the next order.
    Starts and stops its own ``worker_binary``: do not call it inside another ``LocalRuntime``.
    """
    from federated.population import members, taking_part
    from federated.runtime import LocalRuntime
    from keyboard.store import Device

    population = taking_part(home, members(home))  # an opted-out device's n-grams are not counted
    if not population:
        raise NgramError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    started = time.monotonic()
    train_splits = []  # the simulation's adapter: each device's own sentences, used only for its own contribution
    for member in population:
        with Device(home.device(member.device_id)) as device:
            train_splits.append(device.splits().train)
    mechanism = mechanism_for(config)
    rng = rng if rng is not None else np.random.default_rng()
    counts: artifacts.NgramCounts = {}
    rounds = []
    known: set[str] | None = None
    home.logs.mkdir(parents=True, exist_ok=True)
    with LocalRuntime(log_path=home.logs / "worker.log") as runtime:
        for order in config.orders:
            contributions = [  # on each device: from its own train split and the set the server sent
                device_ngram_counts(sentences, order, config.max_per_device, max_bytes=config.max_bytes,
                                    max_count=config.max_count, known=known)
                for sentences in train_splits]
            decoded, result = discover_order(contributions, config, order, target=runtime.worker.target)
            released = release(decoded, mechanism, rng) if mechanism else decoded
            rounds.append(replace(result, released=len(released)))
            counts[order] = {tuple(gram.split(" ")): n for gram, n in released.items()}
            known = set(released)
    from federated import ledger

    dp = mechanism.describe() if mechanism else None
    ledger.append(home.server, {"kind": "ngrams", "method": "heavy_hitters", "devices": len(population),
                                "epsilon": dp and dp["epsilon"], "delta": dp["delta"] if dp else 0.0})
    return NgramTable(counts, len(population), tuple(rounds), mechanism, time.monotonic() - started)


def save(home: Home, table: NgramTable, config: NgramConfig) -> None:
    """Writes ``ngrams.tsv.gz`` and its record ``ngrams.json`` (which names the table's sha256), each atomically."""
    data = table.to_bytes()
    home.ngrams.mkdir(parents=True, exist_ok=True)
    atomic_write(home.ngrams / artifacts.NGRAMS, data)
    record = table.record(config, hashlib.sha256(data).hexdigest())
    atomic_write(home.ngrams / RECORD, json.dumps(record, indent=2, sort_keys=True).encode())


def read_record(home: Home) -> dict | None:
    """The record of the saved table, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((home.ngrams / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def current_table(home: Home) -> bytes | None:
    """The saved table's bytes if they match the record's sha256 (what a version publishes), else None."""
    record, path = read_record(home), home.ngrams / artifacts.NGRAMS
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if record is None or hashlib.sha256(data).hexdigest() != record.get("sha256"):
        return None
    return data


def exact_table(device_sentences, config: NgramConfig) -> dict[int, dict[tuple[str, ...], int]]:
    """What the rounds release without DP, computed centrally from every device's sentences: per
    order, each device's capped top-M (of the n-grams extending what the order before released),
    summed, kept where at least k devices sent it. For benches and tests, which hold the corpus."""
    table, known = {}, None
    for order in config.orders:
        counts, devices = Counter(), Counter()
        for sentences in device_sentences:
            mine = device_ngram_counts(sentences, order, config.max_per_device, max_bytes=config.max_bytes,
                                       max_count=config.max_count, known=known)
            counts.update(mine)
            devices.update(mine.keys())
        table[order] = {tuple(g.split(" ")): c for g, c in counts.items() if devices[g] >= config.k_anonymity}
        known = {" ".join(g) for g in table[order]}
    return table
