"""A device agent that cannot reach its coordinator waits twice as long each time, up to ``max_backoff``."""

from __future__ import annotations

import threading

import grpc
import pytest

from common.errors import ConfigError
from keyboard.agent import DeviceAgent, connect
from keyboard.agent_config import AgentConfig
from keyboard.agent_process import BackgroundAgent
from keyboard.store import Device


class _Down(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE


class _DownChannel:
    def unary_unary(self, method):
        def call(*args, **kwargs):
            raise _Down()
        return call


class _CountingStop(threading.Event):
    """Records each wait instead of sleeping; set after ``n`` waits."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.waits = n, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.n:
            self.set()
        return self.is_set()


@pytest.fixture
def device(tmp_path):
    with Device(tmp_path / "devices" / "dev-1", create=True) as d:
        yield d


@pytest.mark.parametrize(("config", "expected"), [
    (AgentConfig(), [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),  # the default: as before the setting
    (AgentConfig(max_backoff=1.0), [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    (AgentConfig(max_backoff=3.0), [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]),
])
def test_waits_between_attempts_double_up_to_max_backoff(device, config, expected):
    stop = _CountingStop(len(expected))
    DeviceAgent(device.directory, _DownChannel(), config=config).run(stop)
    assert stop.waits == expected
    assert device.status()["coordinator_unreachable"] is True  # what the keyboard's status bar shows


def test_max_backoff_below_the_first_wait_is_refused():
    with pytest.raises(ConfigError, match="at least 0.5 s, got 0.1"):
        AgentConfig(max_backoff=0.1)


def test_the_keyboards_agent_process_and_the_channel_are_given_the_setting(tmp_path):
    command = BackgroundAgent(tmp_path, "127.0.0.1:1", AgentConfig(max_backoff=2.0)).command()
    assert command[command.index("--max-backoff") + 1] == "2.0"
    connect("127.0.0.1:1", None, AgentConfig(max_backoff=2.0)).close()  # gRPC accepts the option
