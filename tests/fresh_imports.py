"""What a fresh interpreter has imported after some code: the import-cost tests of several packages share it.

Only a new process shows it: the test process itself has imported everything the other tests needed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from tests.conftest import REPO


def imported_after(code: str, modules: Sequence[str], label: str | None = None) -> str:
    """The output of ``code`` run by a new interpreter in the repo, ending with a line listing which of
    ``modules`` are then imported (after ``label``, if given): ``"[]"`` or ``"HEAVY []"`` when none is."""
    listed = f"[m for m in {tuple(modules)!r} if m in sys.modules]"
    probe = f"{code}\nimport sys\nprint({f'{label!r}, ' if label else ''}{listed})\n"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                          check=True).stdout
