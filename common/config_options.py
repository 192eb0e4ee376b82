"""Command-line options made from the fields of a frozen config dataclass.

A config declares each default once, on its field, with ``metadata={"help": ...}``; a parser reads
default and help from there, so the two never drift. Used by ``fedkb`` (``fedkb/options.py``) and
by the device's own entry points (``python -m keyboard.personalize``), which never import ``fedkb``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence


def add_config_arguments(parser: argparse.ArgumentParser, config: type, names: Sequence[str], *,
                         flags: Mapping[str, str] | None = None, defaults: Mapping[str, object] | None = None) -> None:
    """One option per named field of the config dataclass ``config``, with the field's default and help.

    The flag is ``--field-name`` unless ``flags`` renames it; ``defaults`` overrides a default for
    one command (``fedkb demo`` trains with other settings). A field's ``metadata`` gives its
    ``help`` and may give ``choices`` and ``type`` (else the type of its default).
    """
    by_name = {f.name: f for f in dataclasses.fields(config)}
    for name in names:
        spec = by_name[name]
        default = (defaults or {}).get(name, spec.default)
        shown = "" if default is None else f" (default {default})"  # a None default's help says what it means
        kwargs = {"default": default, "help": spec.metadata["help"] + shown}
        if "choices" in spec.metadata:
            kwargs["choices"] = spec.metadata["choices"]
        else:
            kwargs["type"] = spec.metadata.get("type", type(spec.default))
        parser.add_argument((flags or {}).get(name, "--" + name.replace("_", "-")), **kwargs)
