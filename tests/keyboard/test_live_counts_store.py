"""Live counts on the device: checked, added per version and source, deleted with the log."""

import pytest

from common import live_counts
from common.messages import MessageError
from keyboard.store import Device, DeviceError


def _counts(**values):
    return {**live_counts.zero(), **values}


def test_counts_add_up_per_version_and_source(tmp_path):
    with Device(tmp_path / "d", create=True) as device:
        assert device.live_counts() == {}
        device.add_live_counts("0001", _counts(words=4, shown_at_3=2, shown_at_1=1, letters=15))
        device.add_live_counts("0001", _counts(words=2, accepted=1, letters=8, letters_saved=3))
        device.add_live_counts("0002", _counts(words=1, letters=3), source="replayed")
        assert device.live_counts() == {"0001": _counts(words=6, shown_at_3=2, shown_at_1=1, accepted=1,
                                                        letters=23, letters_saved=3)}
        assert device.live_counts(source="replayed") == {"0002": _counts(words=1, letters=3)}
        device.delete_log()
        assert device.live_counts() == {} and device.live_counts(source="replayed") == {}


def test_inconsistent_counts_are_refused_and_nothing_is_stored(tmp_path):
    with Device(tmp_path / "d", create=True) as device:
        with pytest.raises(DeviceError, match="accepted"):
            device.add_live_counts("0001", _counts(words=1, accepted=2))
        with pytest.raises(DeviceError, match="source"):
            device.add_live_counts("0001", _counts(), source="made-up")
        assert device.live_counts() == {}


@pytest.mark.parametrize("bad", [{"words": -1}, {"words": 1.5}, {"words": True}, {"nope": 1}])
def test_check_names_the_field(bad):
    with pytest.raises(MessageError):
        live_counts.check({**live_counts.zero(), **bad}, "here")


def test_summary_rates():
    s = live_counts.summary(_counts(words=10, shown_at_3=6, shown_at_1=3, start_at_3=4, start_at_1=2,
                                    accepted=5, modified=1, letters=40, letters_saved=10))
    assert s["impression_recall_at_3"] == 0.6 and s["start_recall_at_1"] == 0.2
    assert s["acceptance_rate"] == 0.5 and s["keystroke_savings"] == 0.25 and s["modified_after_acceptance"] == 0.2
    assert live_counts.summary(live_counts.zero())["keystroke_savings"] is None
