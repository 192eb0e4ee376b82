"""The coordinator refuses uploads that cannot count, and says why (no TFF needed)."""

import numpy as np
import pytest

from common import messages
from federated.uploads import RoundUploads, Task

SHAPES = {"a": (3, 2), "b": (4,)}


def _round():
    r = RoundUploads(7, SHAPES, max_norm=2.0, max_weight=10.0)
    r.tasks["t1"] = Task("t1", "dev1", 7)
    r.tasks["t2"] = Task("t2", "dev2", 7)
    return r


def _upload(device="dev1", task="t1", weight=4.0, **arrays):
    header = {"device_id": device, "task_id": task, "round": 7, "weight": weight, "metrics": {"tokens": 3.0}}
    delta = {"a": np.full((3, 2), 0.1, np.float32), "b": np.zeros(4, np.float32)}
    delta.update(arrays)
    return messages.unpack(messages.pack(header, delta))


def test_a_good_upload_is_recorded_in_model_order():
    r = _round()
    assert r.accept(*_upload()) == "dev1"
    got = r.accepted["dev1"]
    assert [d.shape for d in got.delta] == [(3, 2), (4,)] and got.weight == 4.0 and got.metrics == {"tokens": 3.0}


@pytest.mark.parametrize("change, reason", [
    (dict(task="nope"), "not a task of the current round"),
    (dict(device="dev2"), "given to another device"),
    (dict(a=np.zeros((2, 3), np.float32)), "a is float32[2, 3]"),
    (dict(a=np.zeros((3, 2), np.float64)), "a is float64"),
    (dict(b=np.array([0, 0, np.nan, 0], np.float32)), "b is not finite"),
    (dict(a=np.full((3, 2), 5.0, np.float32)), "above the bound"),
    (dict(weight=11.0), "weight 11.0 is outside"),
    (dict(weight=-1.0), "outside"),
    (dict(c=np.zeros(1, np.float32)), "extra ['c']"),
])
def test_a_bad_upload_is_refused_with_its_reason(change, reason):
    r = _round()
    with pytest.raises(messages.MessageError, match=None) as err:
        r.accept(*_upload(**change))
    assert reason in str(err.value)
    assert not r.accepted and not r.tasks["t1"].answered  # a refused upload leaves the task open


def test_a_replayed_or_late_upload_is_refused():
    r = _round()
    r.accept(*_upload())
    with pytest.raises(messages.MessageError, match="replayed"):
        r.accept(*_upload())
    r.closed = True
    with pytest.raises(messages.MessageError, match="late"):
        r.accept(*_upload(device="dev2", task="t2"))


def test_a_missing_tensor_is_refused():
    r = _round()
    header, arrays = _upload()
    del arrays["b"]
    with pytest.raises(messages.MessageError, match=r"missing \['b'\]"):
        r.accept(header, arrays)


@pytest.mark.parametrize("data, reason", [
    (b"", "bad magic"), (b"XXXX\x00\x00\x00\x00", "bad magic"),
    (b"FKB1\x00\x00\x01\x00{}", "runs past the end"),
    (b"FKB1\x00\x00\x00\x02\xff\xfe", "not UTF-8 JSON"),
    (b"FKB1\x00\x00\x00\x02[]", "not a JSON object"),
    (b"FKB1\x00\x00\x00\x02{}PK-garbage", "not a readable npz"),
])
def test_malformed_messages_are_refused(data, reason):
    with pytest.raises(messages.MessageError, match=reason):
        messages.unpack(data)


def test_messages_round_trip_and_never_unpickle():
    header, arrays = messages.unpack(messages.pack({"x": 1}, {"w": np.arange(3, dtype=np.float32)}))
    assert header == {"x": 1} and arrays["w"].tolist() == [0.0, 1.0, 2.0]
    import io
    buf = io.BytesIO()
    np.savez(buf, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(messages.MessageError, match="not a readable npz"):
        messages.unpack(messages.pack({}) + buf.getvalue())


def test_the_same_upload_sent_again_is_recognised_and_not_counted_twice():
    r = _round()
    header, arrays = _upload()
    r.accept(header, arrays, digest="d1")
    assert r.resent(header, "d1")  # the device lost the reply and sent the same bytes again
    assert not r.resent(header, "d2") and not r.resent({**header, "device_id": "dev2"}, "d1")
    assert not r.resent({**header, "task_id": "t2"}, "d1")  # t2 was never answered
    with pytest.raises(messages.MessageError, match="replayed"):  # other bytes for the answered task
        r.accept(header, arrays, digest="d2")
    assert list(r.accepted) == ["dev1"]
