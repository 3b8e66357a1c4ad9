"""Shared fixtures. Kept minimal and generic: nothing here is autouse.

``lab``: start real ``aggregator``/``producer`` processes and raw clients for one test through the
project's one process module (``benchmarks.processes.Lab``); all of them are killed and their
sockets, FIFOs and temp directories removed at teardown, pass or fail.
"""

from __future__ import annotations

import pytest

from benchmarks.processes import Lab


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()
