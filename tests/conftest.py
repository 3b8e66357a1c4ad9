"""Shared fixtures. Kept minimal and generic: nothing here is autouse.

``lab``: start real ``aggregator``/``producer`` processes and raw clients for one test through the
project's one process module (``benchmarks.processes.Lab``); all of them are killed and their
sockets, FIFOs and temp directories removed at teardown, pass or fail.

``hot_path``: each implementation of the aggregator's hot path (``aggregator.hotpath``: the pure
Python reference, and the C extension), so that the framing, records and fuzz tests hold for
both. A missing extension (no compiler at install) is a skip that says why.
"""

from __future__ import annotations

import pytest

from aggregator import hotpath
from benchmarks.processes import Lab


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module", params=["python", "native"])
def hot_path(request) -> hotpath.Implementation:
    implementation = hotpath.IMPLEMENTATIONS.get(request.param)
    if implementation is None:
        pytest.skip(f"no native hot path in this installation: {hotpath.NATIVE_MISSING}")
    return implementation
