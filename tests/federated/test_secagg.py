"""The secure-aggregation protocol in numpy: sums, dropouts, uniform masks, a server that sees no input."""

import hashlib
import inspect

import numpy as np
import pytest
from scipy import stats

from common import shamir
from federated import secagg


def _secure_float_sum(updates, quantizer, *, rng=None, **protocol):
    """Quantize on each client, run the protocol, dequantize: (sum over survivors, survivor count)."""
    if len(updates) > quantizer.max_clients:
        raise ValueError(f"{len(updates)} clients exceed the quantizer's max_clients={quantizer.max_clients}")
    total, survivors = secagg.secure_sum([quantizer.quantize(u, rng) for u in updates], **protocol)
    return quantizer.dequantize(total), len(survivors)


def _entropy(seed: int):
    """A deterministic byte source (tests only), so statistics and keys are reproducible."""
    state = {"i": 0}

    def draw(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"{seed}/{state['i']}".encode()).digest()
            state["i"] += 1
        return out[:n]

    return draw


def _vectors(n: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, secagg.MODULUS, size=length, dtype=np.uint64).astype(np.uint32) for _ in range(n)]


def _plain_sum(vectors, members) -> np.ndarray:
    return (sum(vectors[i].astype(np.uint64) for i in members) % secagg.MODULUS).astype(np.uint32)


# --- building blocks, against hand-worked numbers ------------------------------------------


def test_shamir_any_t_shares_rebuild_the_secret():
    # f(x) = 42 + 5x: shares 47, 52, 57; any two of them interpolate back to f(0) = 42.
    coefficients = iter([(5).to_bytes(74, "little")])
    shares = shamir.split(42, 3, 2, entropy=lambda n: next(coefficients))
    assert shares == [47, 52, 57]
    assert shamir.combine({1: 47, 3: 57}) == shamir.combine({2: 52, 3: 57}) == 42

    secret = int.from_bytes(b"\xff" * 32, "little")  # a 256-bit secret, the size of a key
    shares = shamir.split(secret, 7, 4, entropy=_entropy(1))
    assert shamir.combine({x: shares[x - 1] for x in (2, 3, 5, 7)}) == secret
    assert shamir.combine({x: shares[x - 1] for x in (2, 3, 5)}) != secret  # t - 1 shares do not


def test_expand_is_chacha20_rfc8439_keystream():
    # RFC 8439 appendix A.1, test vector #1: all-zero key and nonce, block counter 0.
    expected = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586")
    assert secagg.expand(bytes(32), 16).astype("<u4").tobytes() == expected


def test_add_mod_wraps_explicitly():
    a = np.array([2**32 - 1, 5, 0], dtype=np.uint32)
    b = np.array([2, 7, 1], dtype=np.uint32)
    assert secagg.add_mod(a, b).tolist() == [1, 12, 1]
    assert secagg.add_mod(a, b, -1).tolist() == [2**32 - 3, 2**32 - 2, 2**32 - 1]


def test_quantizer_scale_and_codes_by_hand():
    q = secagg.Quantizer(bound=1.0, max_clients=2)
    # (2^31 - 1) // 2 = 1073741823 < 2^30, so the scale is 2^29 and two clients stay below 2^31.
    assert q.scale == 2.0**29
    codes = q.quantize(np.array([-0.5, 0.25, 3.0]))
    assert codes.tolist() == [2**32 - 2**28, 2**27, 2**29]  # -0.5 wraps; 3.0 is clipped to 1.0
    assert q.dequantize(secagg.add_mod(codes, codes)).tolist() == [-1.0, 0.5, 2.0]
    assert q.error_bound(2) == 2 / 2**29 / 2


@pytest.mark.parametrize("stochastic", [False, True])
def test_float_sum_is_the_clipped_sum_within_the_worked_bound(stochastic):
    rng = np.random.default_rng(3)
    updates = [rng.normal(0, 0.4, size=500) for _ in range(8)]
    q = secagg.Quantizer(bound=1.0, max_clients=10, stochastic=stochastic)
    total, count = _secure_float_sum(updates, q, rng=np.random.default_rng(4), entropy=_entropy(2))
    clipped = sum(np.clip(u, -1.0, 1.0) for u in updates)
    assert count == 8
    # Worked bound: each client's code is within 1/(2s) (1/s stochastic) of s * x, and 8 add up.
    assert np.abs(total - clipped).max() <= q.error_bound(8) == 8 / q.scale * (1 if stochastic else 0.5)
    assert np.abs(total - clipped).max() > 0  # the quantization is real, not a float sum


def test_more_clients_than_the_quantizer_allows_is_refused():
    with pytest.raises(ValueError, match="max_clients=3"):
        _secure_float_sum([np.zeros(3)] * 4, secagg.Quantizer(1.0, 3))


# --- the protocol ---------------------------------------------------------------------------


def test_sum_without_dropouts_is_the_plain_sum_mod_2_32():
    vectors = _vectors(5, 257)
    total, survivors = secagg.secure_sum(vectors, entropy=_entropy(5))
    assert survivors == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(total, _plain_sum(vectors, survivors))


@pytest.mark.parametrize("after_sharing, during_unmasking",
                         [({2}, set()), ({0, 6}, {3}), (set(), {1, 4, 5}), ({1, 2}, {6})])
def test_sum_survives_up_to_n_minus_t_dropouts(after_sharing, during_unmasking):
    vectors = _vectors(7, 100, seed=1)  # t = 4: up to 3 dropouts in all
    total, survivors = secagg.secure_sum(vectors, drop_after_sharing=after_sharing,
                                         drop_during_unmasking=during_unmasking, entropy=_entropy(6))
    assert survivors == sorted(set(range(7)) - after_sharing)
    # Clients that drop during unmasking did send masked input: their vectors are in the sum.
    np.testing.assert_array_equal(total, _plain_sum(vectors, survivors))


def test_too_many_dropouts_before_masking_fail_with_who_and_the_threshold():
    with pytest.raises(secagg.SecAggError) as err:
        secagg.secure_sum(_vectors(7, 10), drop_after_sharing={0, 2, 4, 6}, entropy=_entropy(7))
    message = str(err.value)
    assert "masked input collection" in message and "3 of 7 clients" in message
    assert "threshold t=4" in message and "tolerates 3 dropouts" in message and "missing: 0, 2, 4, 6" in message


def test_too_few_shares_at_unmasking_fail_clearly():
    with pytest.raises(secagg.SecAggError, match=r"unmasking: 3 of 6 clients.*t=4.*missing: 0, 1, 5"):
        secagg.secure_sum(_vectors(7, 10), drop_after_sharing={3}, drop_during_unmasking={0, 1, 5}, entropy=_entropy(8))


def test_server_cannot_rebuild_a_seed_from_fewer_than_t_shares():
    server = secagg.SecAggServer(5, 3, names=["a", "b", "c", "d", "e"])
    with pytest.raises(secagg.SecAggError, match="self-mask seed of client c: 2 shares, threshold t=3"):
        server._rebuild(2, {1: 10, 2: 20}, "self-mask seed")


def test_a_client_never_reveals_shares_below_threshold_or_when_declared_dropped():
    n, t = 4, 3
    clients = [secagg.SecAggClient(i, n, t, entropy=_entropy(10 + i)) for i in range(n)]
    server = secagg.SecAggServer(n, t)
    roster = server.collect_keys({c.index: c.advertise_keys() for c in clients})
    boxes = server.route_shares({c.index: c.share_keys(roster) for c in clients})
    for c in clients:
        c.receive_shares(boxes[c.index])
    with pytest.raises(secagg.SecAggError, match="fewer than t=3"):
        clients[0].unmask_shares({0, 1})
    with pytest.raises(secagg.SecAggError, match="declared dropped"):
        clients[3].unmask_shares({0, 1, 2})
    shares = clients[0].unmask_shares({0, 1, 2})
    assert set(shares.self_seed) == {0, 1, 2} and set(shares.mask_key) == {3}  # never both for one client


@pytest.mark.filterwarnings("ignore:np.find_common_type is deprecated:DeprecationWarning")  # scipy 1.9 on numpy 1.25
def test_a_masked_vector_is_uniform_over_z_2_32():
    # A very non-uniform input (all zeros but a ramp), masked by one client of three.
    length = 1 << 16
    plain = np.zeros(length, dtype=np.uint32)
    plain[::7] = np.arange(plain[::7].size, dtype=np.uint32)
    clients = [secagg.SecAggClient(i, 3, 2, entropy=_entropy(20 + i)) for i in range(3)]
    server = secagg.SecAggServer(3, 2)
    roster = server.collect_keys({c.index: c.advertise_keys() for c in clients})
    boxes = server.route_shares({c.index: c.share_keys(roster) for c in clients})
    for c in clients:
        c.receive_shares(boxes[c.index])
    masked = clients[1].mask(plain).vector

    def p_values(v):
        byte_counts = np.bincount(v.view(np.uint8), minlength=256)
        return stats.chisquare(byte_counts).pvalue, stats.kstest(v / 2.0**32, "uniform").pvalue

    chi_p, ks_p = p_values(masked)
    assert chi_p > 1e-3 and ks_p > 1e-3  # fixed seed: the p-values are fixed too
    assert max(p_values(plain)) < 1e-12  # and the same tests do tell the plain vector apart


def test_no_server_side_object_holds_an_unmasked_update():
    n, length = 6, 512
    vectors = _vectors(n, length, seed=9)
    clients = [secagg.SecAggClient(i, n, 4, entropy=_entropy(30 + i)) for i in range(n)]
    server = secagg.SecAggServer(n, 4)
    roster = server.collect_keys({c.index: c.advertise_keys() for c in clients})
    boxes = server.route_shares({c.index: c.share_keys(roster) for c in clients})
    for c in clients:
        c.receive_shares(boxes[c.index])
    survivors = [0, 1, 2, 4, 5]  # client 3 drops, so the server also rebuilds a secret key
    server.collect_masked(clients[i].mask(vectors[i]) for i in survivors)
    held_before_unmask = server.masked_sum.copy()
    total = server.unmask(clients[i].unmask_shares(survivors) for i in survivors)
    np.testing.assert_array_equal(total, _plain_sum(vectors, survivors))

    held = []

    def walk(obj):
        if isinstance(obj, np.ndarray):
            held.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                walk(v)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj))

    walk(vars(server))
    assert held, "the walk found the masked sum at least"
    for array in [*held, held_before_unmask]:
        for plain in vectors:  # no stored vector agrees with any client's input beyond chance
            assert np.mean(array == plain) < 0.01
    assert np.mean(held_before_unmask == total) < 0.01  # even the stored sum is masked

    # And by signature: no server method accepts a bare client vector.
    allowed = {"Mapping[int, PublicKeys]", "Mapping[int, Mapping[int, bytes]]", "Iterable[MaskedInput]",
               "Iterable[UnmaskShares]", "np.ndarray", "Collection[int]", "str", "int", "dict[int, int]"}
    for name, method in inspect.getmembers(secagg.SecAggServer, inspect.isfunction):
        for param in list(inspect.signature(method).parameters.values())[1:]:
            if param.annotation == "np.ndarray":
                assert (name, param.name) == ("collect_masked_sum", "masked_sum")
            else:
                assert param.annotation in allowed | {inspect.Parameter.empty, "Sequence[str] | None"}, (name, param)
