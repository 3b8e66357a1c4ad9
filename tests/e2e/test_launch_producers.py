"""launch-producers.sh: every registered transport, exact counts on the reliable ones, clear errors.

The script's transport list comes from the registry, so a transport registered in
``aggregator/transports`` is served here with no edit to the script or to this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.transports import TRANSPORT_NAMES, get_transport
from benchmarks.processes import run_cli, seqs_by_producer

SCRIPT = Path(__file__).resolve().parents[2] / "launch-producers.sh"
PRODUCERS, COUNT = 3, 40

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("transport", TRANSPORT_NAMES)
def test_every_registered_transport_runs_its_producers(lab, transport):
    agg = lab.aggregator(transport)
    result = run_cli("bash", SCRIPT, transport, "-a", agg.address, "-n", PRODUCERS, "-c", COUNT, "-i", 0,
                     "-p", "lp", timeout=90)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"all {PRODUCERS} producers done ({PRODUCERS * COUNT} messages)"
        in result.stderr
    )
    if get_transport(transport).reliable:
        agg.wait_lines(PRODUCERS * COUNT)
        agg.stop()
        seqs = seqs_by_producer(agg.records())
        assert seqs == {f"lp-{i}": list(range(COUNT)) for i in range(1, PRODUCERS + 1)}
    else:
        agg.stop()  # datagrams on loopback may be dropped: none invented, none duplicated
        seqs = seqs_by_producer(agg.records())
        assert set(seqs) <= {f"lp-{i}" for i in range(1, PRODUCERS + 1)}
        assert all(
            len(set(s)) == len(s) and set(s) <= set(range(COUNT)) for s in seqs.values()
        )


def test_unknown_transport_lists_the_registry():
    result = run_cli("bash", SCRIPT, "carrier-pigeon")
    assert result.returncode == 2
    assert "unknown transport 'carrier-pigeon'" in result.stderr
    assert " ".join(TRANSPORT_NAMES) in result.stderr


def test_failed_producers_are_named_and_counted(tmp_path):
    nobody = tmp_path / "nobody-listens.sock"
    result = run_cli(
        "bash",
        SCRIPT,
        "unixsock",
        "-a",
        nobody,
        "-n",
        2,
        "-c",
        1,
        "-p",
        "gone",
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        "producer gone-1 failed" in result.stderr
        and "producer gone-2 failed" in result.stderr
    )
    assert "2 of 2 producers failed" in result.stderr


def test_help_and_bad_options():
    help_ = run_cli("bash", SCRIPT, "--help")
    assert help_.returncode == 0 and "USAGE: bash launch-producers.sh" in help_.stdout
    bad = run_cli("bash", SCRIPT, "unixsock", "--frobnicate")
    assert bad.returncode == 2 and "unknown option --frobnicate" in bad.stderr
    zero = run_cli("bash", SCRIPT, "unixsock", "-n", 0)
    assert zero.returncode == 2 and "-n must be a positive integer" in zero.stderr
