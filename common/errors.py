"""The one base class of errors meant for the user.

An error that derives from ``FedkbError`` says what was expected, what arrived and where (file,
line, device id); the ``fedkb`` command line prints its message in one line and exits 1. Any other
exception is a bug and keeps its traceback. This module imports nothing, so every package
(the keyboard included) can use it.
"""

from __future__ import annotations


class FedkbError(Exception):
    """An error meant for the user: the CLI prints its message in one line."""


class ConfigError(FedkbError, ValueError):
    """A setting out of range or options that do not go together; the message names the option.

    Also a ``ValueError``, which is what a bad argument to a constructor has always raised.
    """
