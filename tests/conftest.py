"""Shared fixtures. Kept minimal and generic: nothing here is autouse.

``lab``: start real ``aggregator``/``producer`` processes and raw clients for one test; all of
them are killed and their sockets, FIFOs and temp directories removed at teardown, pass or fail.
See ``tests/helpers.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:  # "import helpers" from test modules, whatever the import mode
    sys.path.insert(0, _HERE)

from helpers import Lab  # noqa: E402


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()
