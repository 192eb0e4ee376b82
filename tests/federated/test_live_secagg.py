"""Live secure aggregation's stages at the coordinator, driven by real clients' messages (no network).

Each device's side is ``common.secagg.SecAggClient`` as the agent runs it; the coordinator's side
is ``federated.live_secagg.SecureCollection``. Only masked vectors and sealed shares reach it,
and the sum it unmasks is the survivors' weighted mean.
"""

from __future__ import annotations

import numpy as np
import pytest

from common import messages
from common.secagg import SecAggClient, SecAggError, UpdateCodec
from federated.live_secagg import SecureCollection
from federated.secagg_factory import SecAggConfig

CODEC = UpdateCodec(("a", "b"), ((3,), (2, 2)), clip=1.0, max_weight=64.0, max_clients=6)


def _update(rng):
    delta = {"a": rng.normal(0, 0.1, 3).astype(np.float32), "b": rng.normal(0, 0.1, (2, 2)).astype(np.float32)}
    return delta, float(rng.integers(1, 64)), {"loss_x_examples": 3.5, "examples": 7, "tokens": 40, "correct": 9}


def _u8(b: bytes) -> np.ndarray:
    return np.frombuffer(b, np.uint8)


def _run(selected=6, goal=5, drop_after_sharing=(), silent_in_unmask=(), seed=0):
    rng = np.random.default_rng(seed)
    order = [f"dev{i}" for i in range(selected)]
    sa = SecureCollection(order, CODEC, goal, SecAggConfig().threshold)
    clients = {i: SecAggClient(i, selected, selected) for i in range(selected)}
    updates = {i: _update(rng) for i in range(selected)}
    for i in range(goal):  # the first K to finish training advertise keys; the keys stage closes at K
        k = clients[i].advertise_keys()
        sa.submit(order[i], "keys", {}, {"cipher": _u8(k.cipher), "mask": _u8(k.mask)})
    assert sa.complete()
    sa.close_stage()
    late = clients[goal].advertise_keys()
    with pytest.raises(messages.MessageError, match="late"):
        sa.submit(order[goal], "keys", {}, {"cipher": _u8(late.cipher), "mask": _u8(late.mask)})
    roster_reply = {i: sa.reply(order[i], "keys")[0] for i in range(goal)}
    for i, reply in roster_reply.items():
        from common.secagg import PublicKeys

        roster = {int(v): PublicKeys(bytes.fromhex(c), bytes.fromhex(m)) for v, (c, m) in reply["roster"].items()}
        sealed = clients[i].share_keys(roster, threshold=reply["threshold"])
        sa.submit(order[i], "shares", {}, {f"to{v}": _u8(b) for v, b in sealed.items()})
    sa.close_stage()
    for i in range(goal):
        _, boxes = sa.reply(order[i], "shares")
        clients[i].receive_shares({int(n[4:]): a.tobytes() for n, a in boxes.items()})
    for i in range(goal):
        if i not in drop_after_sharing:
            sa.submit(order[i], "masked", {}, {"vector": clients[i].mask(CODEC.encode(*updates[i])).vector})
    assert sa.complete() == (not drop_after_sharing)  # a dropout is waited for until the stage deadline
    sa.close_stage()
    survivors = sa.reply(order[0], "masked")[0]["survivors"]
    for i in survivors:
        if i not in silent_in_unmask:
            shares = clients[i].unmask_shares(survivors)
            sa.submit(order[i], "unmask",
                      {"self_seed": {str(v): format(s, "x") for v, s in shares.self_seed.items()},
                       "mask_key": {str(v): format(s, "x") for v, s in shares.mask_key.items()}}, {})
    sa.close_stage()
    return sa, updates, survivors


def _weighted_mean(updates, members):
    w = sum(updates[i][1] for i in members)
    return {n: sum(np.float64(updates[i][1]) * updates[i][0][n] for i in members) / w for n in CODEC.names}


def test_the_unmasked_sum_is_the_survivors_weighted_mean_despite_two_dropouts():
    sa, updates, survivors = _run(drop_after_sharing={1}, silent_in_unmask={3})
    assert survivors == [0, 2, 3, 4] and sa.survivors() == ["dev0", "dev2", "dev3", "dev4"]
    mean, weight_sum, metrics = CODEC.decode(sa.total)
    expected = _weighted_mean(updates, survivors)
    bound = CODEC._quantizers[0].error_bound(len(survivors)) / weight_sum + 1e-6
    for got, name in zip(mean, CODEC.names):
        np.testing.assert_allclose(got, expected[name], atol=bound)
    assert weight_sum == sum(updates[i][1] for i in survivors)
    assert metrics["tokens"] == 160 and metrics["examples"] == 28 and metrics["loss_x_examples"] == pytest.approx(14.0)


def test_too_few_unmasking_shares_abandon_the_round_and_name_who_is_missing():
    with pytest.raises(SecAggError, match="unmasking: 2 of 4.*t=3"):
        _run(drop_after_sharing={1}, silent_in_unmask={3, 4})


def test_malformed_messages_are_refused_and_the_sender_is_left_out():
    sa = SecureCollection(["a", "b", "c"], CODEC, 3, SecAggConfig().threshold)
    with pytest.raises(messages.MessageError, match="uint8\\[32\\]"):
        sa.submit("a", "keys", {}, {"cipher": np.zeros(31, np.uint8), "mask": np.zeros(32, np.uint8)})
    with pytest.raises(messages.MessageError, match="earlier message of this device was refused"):
        sa.submit("a", "keys", {}, {"cipher": np.zeros(32, np.uint8), "mask": np.zeros(32, np.uint8)})
    with pytest.raises(messages.MessageError, match="not selected"):
        sa.submit("zz", "keys", {}, {})
    with pytest.raises(messages.MessageError, match="while the round is at keys"):
        sa.submit("b", "masked", {}, {"vector": np.zeros(CODEC.length, np.uint32)})
    for d in ("b", "c"):
        k = SecAggClient(0, 3, 3).advertise_keys()
        sa.submit(d, "keys", {}, {"cipher": _u8(k.cipher), "mask": _u8(k.mask)})
    assert sa.complete()  # every device not refused has advertised
    sa.close_stage()
    assert set(sa.server.roster) == {1, 2}
    with pytest.raises(messages.MessageError, match="the roster is \\[1, 2\\]"):
        sa.submit("b", "shares", {}, {"to1": np.zeros(160, np.uint8)})


def test_a_device_refuses_a_threshold_below_a_majority_of_the_roster():
    clients = [SecAggClient(i, 5, 5) for i in range(5)]
    roster = {c.index: c.advertise_keys() for c in clients}
    with pytest.raises(SecAggError, match="below a majority"):
        clients[0].share_keys(roster, threshold=2)
    assert clients[0].share_keys(roster, threshold=3)


def test_the_codec_checks_the_update_and_clips_it_as_tff_does():
    with pytest.raises(SecAggError, match="tensors"):
        CODEC.encode({"a": np.zeros(3, np.float32)}, 1.0, {})
    with pytest.raises(SecAggError, match="b is \\[4\\]"):
        CODEC.encode({"a": np.zeros(3, np.float32), "b": np.zeros(4, np.float32)}, 1.0, {})
    big = {"a": np.full(3, 10.0, np.float32), "b": np.zeros((2, 2), np.float32)}
    mean, weight, _ = CODEC.decode(CODEC.encode(big, 2.0, {}))
    assert weight == 2.0 and np.linalg.norm(mean[0]) == pytest.approx(1.0, abs=1e-6)  # clipped to L2 norm 1
    assert UpdateCodec.from_dict(CODEC.as_dict()) == CODEC
    with pytest.raises(SecAggError, match="not an update codec"):
        UpdateCodec.from_dict({"names": ["a"], "shapes": [[1], [2]], "clip": 1, "max_weight": 1, "max_clients": 2,
                               "metric_bound": 1})
