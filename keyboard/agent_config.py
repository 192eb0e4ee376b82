"""How a device agent waits for a coordinator it cannot reach (``keyboard/agent.py``).

Kept apart from the agent so the command line can read its defaults without importing gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.errors import ConfigError

FIRST_BACKOFF = 0.5  # seconds before the first retry; each failed attempt doubles the wait


@dataclass(frozen=True)
class AgentConfig:
    """A device agent's retry settings (``--max-backoff``)."""

    max_backoff: float = field(default=30.0, metadata={
        "help": "seconds at most between attempts to reach a coordinator that is down or restarting (the wait "
                "doubles from 0.5 s up to this; gRPC's own reconnection is capped the same)"})

    def __post_init__(self) -> None:
        if not self.max_backoff >= FIRST_BACKOFF:
            raise ConfigError(f"--max-backoff must be at least {FIRST_BACKOFF} s, got {self.max_backoff}")


DEFAULT = AgentConfig()  # what an agent started without settings uses
