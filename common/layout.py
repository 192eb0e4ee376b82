"""Where a fedkb installation keeps its devices and its server state.

A *home* holds two rooms that never share files, and, only when asked for, a scratch folder:

    <home>/devices/<id>/   one directory per device; raw text lives only here
    <home>/server/         tokenizer, private n-grams, pretrained model (public text only), training
                           checkpoints, metrics, published models
    <home>/references/     the references of ``fedkb eval --references``, fitted on every device's
                           pooled text: not server state (a real server never holds that text);
                           deleting any device's data deletes it
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "FEDKB_HOME"


def default_home() -> Path:
    """The home used when neither ``--home`` nor ``FEDKB_HOME`` is given."""
    import platformdirs  # small, but only needed here

    return Path(platformdirs.user_data_dir("fedkb", appauthor=False))


def resolve_home(cli_value: str | os.PathLike | None = None) -> "Home":
    """``--home`` wins over ``FEDKB_HOME``, which wins over the platform default."""
    if cli_value:
        return Home(Path(cli_value).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        return Home(Path(env).expanduser())
    return Home(default_home())


@dataclass(frozen=True)
class Home:
    """Paths inside one fedkb home. Nothing here touches the disk."""

    root: Path

    @property
    def devices(self) -> Path:
        return self.root / "devices"

    @property
    def server(self) -> Path:
        return self.root / "server"

    @property
    def tokenizer(self) -> Path:
        return self.server / "tokenizer"

    @property
    def ngrams(self) -> Path:
        return self.server / "ngrams"

    @property
    def pretrained(self) -> Path:
        return self.server / "pretrained"

    @property
    def state(self) -> Path:
        return self.server / "state"

    @property
    def models(self) -> Path:
        return self.server / "models"

    @property
    def keys(self) -> Path:  # the coordinator's version-signing key pair (common/signing.py)
        return self.server / "keys"

    @property
    def tls(self) -> Path:  # the CA and the coordinator's certificate (federated/tls.py)
        return self.server / "tls"

    @property
    def metrics_csv(self) -> Path:
        return self.server / "metrics.csv"

    @property
    def tensorboard(self) -> Path:
        return self.server / "tensorboard"

    @property
    def logs(self) -> Path:
        return self.server / "logs"

    @property
    def references(self) -> Path:  # pooled-text references, outside server/ (keyboard/forget.py deletes it)
        return self.root / "references"

    def device(self, device_id: str) -> Path:
        return self.devices / device_id
