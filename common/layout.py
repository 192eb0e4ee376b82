"""Where a fedkb installation keeps its devices and its server state.

A *home* holds two rooms that never share files, and, only when asked for, a scratch folder:

    <home>/devices/<id>/   one directory per device; raw text lives only here
    <home>/server/         tokenizer, private n-grams, pretrained model (public text only), training
                           checkpoints, metrics, published models
    <home>/references/     the references of ``fedkb eval --references``, fitted on every device's
                           pooled text: not server state (a real server never holds that text);
                           deleting any device's data deletes it

Every path name of a home and of a device directory is spelled here once: ``Home`` for the home,
``DeviceLayout`` for one device's directory, and the names relative to ``server/`` for modules
that are handed the server directory rather than a home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "FEDKB_HOME"

# Relative to <home>/server/, for modules handed the server directory.
EVALS = "evals"  # one JSON per evaluated version (federated evaluation's released sums)
RUN_JSON = Path("state") / "run.json"  # the settings of the training run the checkpoints belong to
METRICS_CSV = "metrics.csv"
TOKENIZER_MODEL = "spm.model"  # in the tokenizer directory and in every version directory

# Relative to a device's directory.
DEVICE_DB = "log.sqlite"  # the typing log (keyboard/store.py)
INSTALLED_DIR = "model"  # installed global versions: the current one and the previous one
INSTALLED_POINTER = "installed.json"  # in INSTALLED_DIR: {"current": name, "previous": name}
PERSONAL_DIR = "personal"  # the personal model, in the published-version format
EVAL_DIR = "eval"  # what this device measured (personalization.json)
PERSONALIZATION_RECORD = "personalization.json"  # in EVAL_DIR
CACHE_DIR = "cache"  # token ids of the text (lm/examples.py): never leave the device either
INCOMING_DIR = "incoming"  # a pulled version, until it is installed (keyboard/pull.py)
DEVICE_TLS_DIR = "tls"  # the device's credential, issued at enrolment
AGENT_LOG = "agent.log"


def default_home() -> Path:
    """The home used when neither ``--home`` nor ``FEDKB_HOME`` is given."""
    import platformdirs  # small, but only needed here

    return Path(platformdirs.user_data_dir("fedkb", appauthor=False))


def resolve_home(cli_value: str | os.PathLike | None = None) -> Home:
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
        return self.server / METRICS_CSV

    @property
    def evals(self) -> Path:  # server/evals/<version>.json
        return self.server / EVALS

    @property
    def run_json(self) -> Path:
        return self.server / RUN_JSON

    @property
    def tokenizer_model(self) -> Path:
        return self.tokenizer / TOKENIZER_MODEL

    @property
    def tensorboard(self) -> Path:
        return self.server / "tensorboard"

    @property
    def logs(self) -> Path:
        return self.server / "logs"

    @property
    def references(self) -> Path:  # pooled-text references, outside server/ (keyboard/forget.py deletes it)
        return self.root / "references"

    @property
    def reference_evals(self) -> Path:  # references/evals/<version>.json
        return self.references / EVALS

    def device(self, device_id: str) -> Path:
        return self.devices / device_id


@dataclass(frozen=True)
class DeviceLayout:
    """Paths inside one device's directory. Nothing here touches the disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def db(self) -> Path:
        return self.root / DEVICE_DB

    @property
    def installed(self) -> Path:
        return self.root / INSTALLED_DIR

    @property
    def installed_pointer(self) -> Path:
        return self.installed / INSTALLED_POINTER

    @property
    def personal(self) -> Path:
        return self.root / PERSONAL_DIR

    @property
    def eval(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def personalization(self) -> Path:
        return self.eval / PERSONALIZATION_RECORD

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING_DIR

    @property
    def tls(self) -> Path:
        return self.root / DEVICE_TLS_DIR

    @property
    def agent_log(self) -> Path:
        return self.root / AGENT_LOG
