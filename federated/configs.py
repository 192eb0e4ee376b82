"""The frozen configs of training, rollout (promotion), evaluation, seeding and live rounds: light, so
that the command line reads their defaults and help without importing TensorFlow.

Each default is declared once, on its field, with its help (``metadata["help"]``); argparse reads
both through ``fedkb.options.add_config_arguments``. The builders take the configs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from common.errors import ConfigError

SERVER_OPTIMIZERS = ("sgdm", "adam", "yogi")
PRESETS = ("tiny", "small", "gboard")  # lm/config.py's presets, named here so the CLI need not import it


@dataclass(frozen=True)
class TrainConfig:
    """How rounds are run. Saved beside the checkpoints; a resumed run must agree on it."""

    preset: str = field(default="small", metadata={
        "help": "model size: small, gboard (Hard et al. 2018, 1.4M parameters), tiny (for tests)", "choices": PRESETS})
    clients_per_round: int = field(default=10, metadata={
        "help": "devices sampled per round (K) from the eligible ones"})
    server_optimizer: str = field(default="adam", metadata={
        "help": "server optimizer (Reddi et al. 2020)", "choices": SERVER_OPTIMIZERS})
    client_lr: float = field(default=0.5, metadata={"help": "local SGD learning rate"})
    client_clip_norm: float = field(default=1.0, metadata={
        "help": "clip local gradients to this global norm (LSTMs explode)"})
    server_lr: float = field(default=0.03, metadata={
        "help": "server learning rate (1.0 with sgdm is plain FedAvg)"})
    server_momentum: float = field(default=0.9, metadata={"help": "momentum of sgdm"})
    local_epochs: int = field(default=1, metadata={"help": "passes over a device's train split per round"})
    batch_size: int = field(default=16, metadata={"help": "examples per local step"})
    min_examples: int = field(default=5, metadata={"help": "train sentences a device needs to take part"})
    max_examples_per_client: int = field(default=512, metadata={
        "help": "cap on the examples a device trains on per round (Gboard caps too)"})
    seed: int = field(default=0, metadata={"help": "availability draws, model initialization and local shuffling"})
    public_sampling: bool = field(default=False, metadata={
        "help": "participants drawn from seed (reproducible, public), not from a secret key"})

    def __post_init__(self) -> None:
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ConfigError(f"server optimizer must be one of {', '.join(SERVER_OPTIMIZERS)}, "
                              f"got {self.server_optimizer!r}")
        for name in ("clients_per_round", "local_epochs", "batch_size", "min_examples", "max_examples_per_client"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("client_lr", "server_lr", "client_clip_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.server_momentum < 1:
            raise ConfigError(f"server momentum must be in [0, 1), got {self.server_momentum}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RolloutConfig:
    """How a candidate version is judged (simulated rollout and live evaluation alike)."""

    threshold: float = field(default=0.5, metadata={
        "help": "hold a version back if its recall@1 is more than this many points below latest"})
    devices: int | None = field(default=100, metadata={
        "help": "devices sampled to compare versions", "type": int})
    seed: int = field(default=0, metadata={"help": "seed of the devices' sample"})

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ConfigError(f"--threshold must be at least 0 points, got {self.threshold}")
        if self.devices is not None and self.devices < 1:
            raise ConfigError(f"--devices must be at least 1, got {self.devices}")


@dataclass(frozen=True)
class SeedConfig:
    """How ``fedkb population seed`` makes devices from a corpus."""

    min_sentences: int = field(default=10, metadata={"help": "leave out users with fewer sentences"})
    max_devices: int | None = field(default=None, metadata={
        "help": "keep only the first N users, in file order", "type": int})
    seed: int = field(default=0, metadata={"help": "seed of the devices' availability models"})

    def __post_init__(self) -> None:
        if self.min_sentences < 1:
            raise ConfigError(f"--min-sentences must be at least 1, got {self.min_sentences}")
        if self.max_devices is not None and self.max_devices < 1:
            raise ConfigError(f"--max-devices must be at least 1, got {self.max_devices}")


@dataclass(frozen=True)
class EvalConfig:
    """Which devices ``fedkb eval`` measures a version on (``federated/evaluation.py`` runs it)."""

    devices: int | None = field(default=None, metadata={
        "help": "evaluate on a seeded sample of N devices (default: all)", "type": int})
    seed: int = field(default=0, metadata={"help": "seed of the devices' sample"})

    def __post_init__(self) -> None:
        if self.devices is not None and self.devices < 1:
            raise ConfigError(f"--devices must be at least 1, got {self.devices}")


@dataclass(frozen=True)
class LiveConfig:
    """How live rounds are run (the training settings themselves are ``TrainConfig``'s)."""

    overselect: float = field(default=1.3, metadata={
        "help": "devices selected per wanted report (as Bonawitz et al. 2019)"})
    selection_window: float = field(default=10.0, metadata={
        "help": "seconds a round waits for more check-ins once K devices are in"})
    report_deadline: float = field(default=300.0, metadata={
        "help": "seconds from selection until the round closes"})
    min_report_fraction: float = 0.8  # of K: fewer accepted reports abandon the round
    retry_after: float = 2.0  # seconds a device not needed now waits before checking in again
    stage_timeout: float = field(default=30.0, metadata={
        "help": "--secure-agg: seconds each stage after the key advertisement waits for stragglers"})
    eval_min_devices: int = field(default=20, metadata={
        "help": "live: evaluation sums are released only from at least this many devices"})
    eval_deadline: float = field(default=300.0, metadata={
        "help": "live: seconds an evaluation of a new version waits for devices' reports"})
    promotion_threshold: float = RolloutConfig.threshold  # recall@1 points a candidate may lose against latest

    def __post_init__(self) -> None:
        if not self.overselect >= 1.0:
            raise ConfigError(f"over-selection must be at least 1, got {self.overselect}")
        if not 0 < self.min_report_fraction <= 1:
            raise ConfigError(f"min report fraction must be in (0, 1], got {self.min_report_fraction}")
        if self.eval_min_devices < 1:
            raise ConfigError(f"eval min devices must be at least 1, got {self.eval_min_devices}")
