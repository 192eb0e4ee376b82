"""Model updates, mixed into ``KeyboardApp``: install a newly promoted version and load its predictor.

A check runs in a thread worker (installing verifies signatures and hashes megabytes of weights),
every ``check_every`` seconds and on Ctrl+R; its result comes back to the event loop as a
``ModelChecked`` message, and the new predictor replaces the old one there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.message import Message

from common.artifacts import ArtifactError
from keyboard.install import installed as installed_version
from keyboard.predictor import Predictor
from keyboard.updates import UpdateError, fetch_update

if TYPE_CHECKING:
    from keyboard.app import KeyboardApp

    _Base = KeyboardApp
else:
    _Base = object


class ModelChecked(Message):
    """A model check finished: a new predictor (or None), the version installed, or an error."""

    def __init__(self, predictor: Predictor | None, installed: str | None, error: str | None, on_demand: bool) -> None:
        super().__init__()
        self.predictor, self.installed, self.error, self.on_demand = predictor, installed, error, on_demand


class UpdatesMixin(_Base):
    """Ctrl+R and the periodic check for a newly promoted model (see the module docstring)."""

    def action_check_update(self) -> None:
        if self.models_dir is None:
            self.notify("This keyboard was started without a models folder; there is nothing to check.")
            return
        self._check_model(on_demand=True)

    def _check_model(self, *, on_demand: bool, load: bool = False) -> None:
        if self._checking:
            if on_demand:
                self.notify("Already checking for a new model…", timeout=3)
            return
        self._checking = True
        self._install_and_load(on_demand, load)

    @work(thread=True, group="model")
    def _install_and_load(self, on_demand: bool, load: bool) -> None:
        """Installs a newly promoted version (if any), then builds its predictor, off the event loop."""
        installed, error, predictor = None, None, None
        if self.models_dir is not None:
            try:
                new = fetch_update(self.device.directory, self.models_dir)
                installed = new.version if new is not None else None
            except (UpdateError, ArtifactError, OSError) as exc:
                error = str(exc)
        # Another process (``fedkb rollout`` in a simulation) may have installed a version meanwhile.
        on_disk = installed_version(self.device.directory)
        running = getattr(self.predictor, "version", None) or ""
        if on_disk is not None and not running.startswith(on_disk.version):
            load, installed = True, installed or on_disk.version
        if load or installed is not None:
            try:
                predictor = self.predictor_factory(self.device.directory)
            except Exception as exc:  # keep the current predictor; say why
                error = f"could not load the model: {exc}"
        self.post_message(ModelChecked(predictor, installed, error, on_demand))

    def on_model_checked(self, message: ModelChecked) -> None:
        self._checking = False
        if message.error and (message.on_demand or message.error != self._last_error):
            self._last_error = message.error
            self.notify(message.error, title="Model update failed", severity="warning", timeout=8, markup=False)
        if message.predictor is not None:
            self.predictor = message.predictor  # in-flight results of the old one are now stale
            self.refresh_status()
            self.request_suggestions(self.typing.value)
        if message.installed is not None:
            self.notify(f"Installed model {message.installed}; suggestions now come from it.", title="New model",
                        markup=False)
        elif message.on_demand and not message.error:
            version = self.predictor.version if self.predictor is not None else None
            self.notify(f"Model {version} is the latest." if version else "No model has been promoted yet.",
                        timeout=4, markup=False)
