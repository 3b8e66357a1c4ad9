"""``loglab nats``, ``loglab hosts`` and ``loglab readback``: the shipping lab's commands.

Each ``up`` starts processes that outlive it (their pids, namespaces and addresses go to a state
file in ``--dir``); the matching ``down`` reads that file and stops everything, deleting the
namespaces. A failed ``up`` stops what it had started before it exits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from shipper.stream import DEFAULT_MAX_BYTES, server_urls

nats_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                       help="Start and stop a JetStream deployment of the lab's own (loopback, free ports, private store).")  # fmt: skip
hosts_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                        help="Simulated hosts (network namespaces on a private bridge, or loopback processes), each "
                        "with an aggregator and a shipper, and a NATS deployment they ship into.")  # fmt: skip

DIR_HELP = "The lab's directory: configs, stores, logs, and the state file the matching 'down' reads."


def _fail(text: str, code: int = 1) -> None:
    print(f"loglab: {text}", file=sys.stderr)
    raise typer.Exit(code)


def _down(state: Path, stop, remove: bool):
    """Stop what an 'up' recorded in ``state`` (``stop(state)``), forget it, maybe delete its dir."""
    import shutil

    if not state.exists():
        _fail(f"no {state}: nothing to stop")
    result = stop(state)
    state.unlink()
    if remove:
        shutil.rmtree(state.parent, ignore_errors=True)
    return result


def _need_nats() -> None:
    from benchmarks.processes import nats_unavailable

    why = nats_unavailable()
    if why:
        _fail(why)


# -- loglab nats ----------------------------------------------------------------------------------

@nats_app.command("up", help="Start nats-server with JetStream (one node, or a three-node cluster with replicas 3) on "
                  "loopback with free ports and a private store under --dir, create the stream LOGS (subjects logs.>, "
                  "limits retention, no age limit, --max-bytes, discard new, duplicate window 2 min), print the URLs.")
def nats_up(
    nodes: int = typer.Option(1, help="1, or 3 for a cluster (stream replicas = nodes)."),
    dir: Path = typer.Option(Path("lab/nats"), "--dir", help=DIR_HELP),
    max_bytes: int = typer.Option(DEFAULT_MAX_BYTES, help="LOGS's size limit in bytes; publishers are refused beyond it."),
) -> None:
    from .cluster import NatsDeployment
    from benchmarks.processes import ProcGroup

    _need_nats()
    if nodes not in (1, 3):
        _fail("--nodes is 1 or 3", 2)
    dir = dir.resolve()
    state = dir / "nats.json"
    if state.exists():
        _fail(f"{state} exists: a deployment may be running (loglab nats down --dir {dir})")
    dir.mkdir(parents=True, exist_ok=True)
    group = ProcGroup()
    try:
        d = NatsDeployment(dir, group, nodes).start()
        d.ensure_stream(max_bytes)
    except BaseException:
        group.close()
        raise
    state.write_text(json.dumps({"nats": d.to_state(), "procs": group.to_state()}, indent=2) + "\n")
    print(d.servers)
    print(f"nats: {nodes} node(s) up, stream LOGS (replicas {nodes}); stop with: loglab nats down --dir {dir}", file=sys.stderr)


@nats_app.command("down", help="Stop the deployment started by 'loglab nats up --dir DIR' (SIGTERM, then SIGKILL after 20 s).")
def nats_down(
    dir: Path = typer.Option(Path("lab/nats"), "--dir", help=DIR_HELP),
    remove: bool = typer.Option(False, "--remove", help="Also delete --dir (configs, stores, logs)."),
) -> None:
    from benchmarks.processes import ProcGroup

    _down(dir / "nats.json", lambda state: ProcGroup.from_state(json.loads(state.read_text())["procs"]).close(), remove)
    print("nats: stopped", file=sys.stderr)


# -- loglab hosts ---------------------------------------------------------------------------------

@hosts_app.command("up", help="Create N hosts (network namespaces on a private bridge inside a namespace of the lab's own, "
                   "addresses 198.18.X.0/24; loopback processes when namespaces cannot be made, and it says so), start "
                   "NATS (node i on host i), an aggregator (unixsock, its own directory) and a shipper on every host.")
def hosts_up(
    hosts: int = typer.Option(3, min=1, max=50, help="How many hosts."),
    nats_nodes: int = typer.Option(3, help="1, or 3 (a cluster: replicas 3; needs 3 hosts or more)."),
    dir: Path = typer.Option(Path("lab/hosts"), "--dir", help=DIR_HELP),
    mode: str = typer.Option("auto", help="auto (namespaces when possible), netns (fail without them), loopback."),
    ship: bool = typer.Option(True, "--ship/--no-ship", help="--no-ship: the shippers only answer queries (shipper --no-ship)."),
) -> None:
    from .pipeline import Pipeline

    _need_nats()
    dir = dir.resolve()
    state = dir / "lab.json"
    if state.exists():
        _fail(f"{state} exists: a lab may be running (loglab hosts down --dir {dir})")
    p = Pipeline(dir, hosts=hosts, nats_nodes=nats_nodes, mode=mode, shipper_args=() if ship else ("--no-ship",))
    p.start()  # stops what it started if it fails
    try:
        p.save_state(state)
    except BaseException:
        p.close()
        raise
    print(p.describe())
    if p.hosts.mode == "loopback":
        print(f"hosts: NOTE: no network namespaces ({p.hosts.fallback_reason}); hosts are processes on loopback")
    for h in p.hosts.hosts:
        print(f"  {h.name}: {h.address}{' netns ' + h.netns if h.netns else ''}  dir {h.dir}  aggregator {p.addresses[h.name]}")
    print(f"  NATS: {p.nats.servers}")
    print(f"next: loglab hosts produce --dir {dir}; loglab hosts readback --dir {dir}; loglab hosts down --dir {dir}")
    print(f"      loglab hosts fill --dir {dir}; loglab hosts query --dir {dir} -- --count PATTERN")


@hosts_app.command("produce", help="Run producers on every host (in its namespace) to completion; their ids are "
                   "rRpI (run R), so every run adds new (host, producer) sequences to check. Then wait until the "
                   "stream holds everything produced so far.")
def hosts_produce(
    dir: Path = typer.Option(Path("lab/hosts"), "--dir", help=DIR_HELP),
    producers: int = typer.Option(4, min=1, help="Producers per host."),
    count: int = typer.Option(10_000, min=1, help="Messages per producer."),
    rate: float = typer.Option(0.0, min=0.0, help="Messages/s per producer (0 = as fast as possible)."),
    size: int = typer.Option(200, min=64, help="Bytes per message line."),
    wait: float = typer.Option(120.0, min=0.0, help="Seconds to wait for the stream to hold everything (0: do not wait)."),
) -> None:
    from .pipeline import Pipeline

    state = dir / "lab.json"
    p = Pipeline.load_state(state)
    run = p._producer_runs + 1
    prefix = f"r{run}p"
    started = p.run_producers(producers, count, "--rate", rate, "--size", size, prefix=prefix)
    p.expected_total.update(p.expected(producers, count, prefix))
    p.save_state(state)
    print(f"produce: {len(started)} producers x {count} messages done on {len(p.hosts.hosts)} hosts")
    if wait:
        total = sum(p.expected_total.values())
        st = p.wait_stream_messages(total, wait)
        print(f"produce: the stream holds {st['messages']} messages (expected so far {total})")


@hosts_app.command("readback", help="Read the whole stream and check every (host, producer, seq) exactly once against "
                   "what 'loglab hosts produce' ran. Exit 1 on a gap, a duplicate or an unexpected record.")
def hosts_readback(
    dir: Path = typer.Option(Path("lab/hosts"), "--dir", help=DIR_HELP),
    print_records: bool = typer.Option(False, "--print", help="Also print every record as HOST<TAB>LINE."),
) -> None:
    from .pipeline import Pipeline
    from .readback import check, exactly_once, format_check, read_stream

    p = Pipeline.load_state(dir / "lab.json")
    on_record = (lambda host, data: sys.stdout.write(f"{host}\t{data.decode(errors='replace')}\n")) if print_records else None
    read, records = p.nats.client(lambda: read_stream(p.nats.urls, on_record=on_record), timeout=600)
    result = check(records, p.expected_total)
    print(format_check(read, result))
    if not exactly_once(result):
        raise typer.Exit(1)


@hosts_app.command("fill", help="Fill every host's aggregated_logs.jsonl with generated records carrying the tokens "
                   "everywhere (50% of lines, all hosts), unique (0.01%, host 1 only), even (25%, even hosts), heavy (50% "
                   "on host 1, 5% elsewhere), through real producers and the host's aggregator (or --direct: appended by "
                   "the generator with the aggregator stopped, faster). The exact count of each token per host is added "
                   "to DIR/querydata.json and printed.")
def hosts_fill(
    dir: Path = typer.Option(Path("lab/hosts"), "--dir", help=DIR_HELP),
    mb: float = typer.Option(60.0, min=0.001, help="Megabytes (10^6 bytes) of records per host."),
    rates: str = typer.Option("", help="Token frequencies, e.g. everywhere=0.5,unique=0.0001,even=0.25,heavy=0.5/0.05 (heavy: host 1 / others)."),
    seed: int = typer.Option(0, help="Seed: the same seed writes the same records."),
    producers: int = typer.Option(4, min=1, max=64, help="Producers per host (through the aggregator)."),
    direct: bool = typer.Option(False, "--direct", help="Append the records directly (the aggregator stopped meanwhile): fast, transport 'direct'."),
) -> None:
    from .pipeline import Pipeline
    from .querydata import TOKENS, TokenRates, fill, save_expected

    try:
        token_rates = TokenRates.parse(rates)
    except ValueError as exc:
        _fail(f"--rates: {exc}", 2)
    state = dir / "lab.json"
    if not state.exists():
        _fail(f"no {state}: start a lab first (loglab hosts up --dir {dir})")
    p = Pipeline.load_state(state)
    try:
        filled = fill(p, mb, token_rates, seed, producers, direct, echo=lambda t: print(t, file=sys.stderr, flush=True))
    finally:
        p.save_state(state)  # aggregators restarted by --direct have new pids
    record = save_expected(dir / "querydata.json", filled, token_rates, seed)
    print("host  " + "  ".join(f"{t:>10}" for t in TOKENS) + "     records   (exact, all fills so far)")
    for host, h in record["hosts"].items():
        print(f"{host:<5} " + "  ".join(f"{h['tokens'][t]:>10}" for t in TOKENS) + f"  {h['lines']:>10}")
    print(f"expected counts: {dir / 'querydata.json'}")


@hosts_app.command("query", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                   help="Run querier against the lab's hosts: with --servers set to the lab's NATS and, when the hosts are "
                   "network namespaces, inside the lab's namespace (the only place their addresses are reachable from). "
                   "Everything after -- goes to querier, e.g. loglab hosts query -- --count heavy. Exits with querier's status.")
def hosts_query(
    ctx: typer.Context,
    dir: Path = typer.Option(Path("lab/hosts"), "--dir", help=DIR_HELP),
) -> None:
    import subprocess

    from benchmarks.processes import querier_argv

    state = dir / "lab.json"
    if not state.exists():
        _fail(f"no {state}: start a lab first (loglab hosts up --dir {dir})")
    d = json.loads(state.read_text())
    servers = ",".join(n["url"] for n in d["nats"]["nodes"])
    argv = querier_argv(servers, *ctx.args, netns=d["nats"].get("control_netns"))
    raise typer.Exit(subprocess.run(argv).returncode)


@hosts_app.command("down", help="Stop every process of the lab (shippers first: they ship what they read and save "
                   "their checkpoints; then aggregators; then NATS) and delete its namespaces.")
def hosts_down(
    dir: Path = typer.Option(Path("lab/hosts"), "--dir", help=DIR_HELP),
    remove: bool = typer.Option(False, "--remove", help="Also delete --dir (logs, outputs, stores)."),
) -> None:
    from .pipeline import Pipeline

    mode = _down(dir / "lab.json", lambda state: (p := Pipeline.load_state(state)).close() or p.hosts.mode, remove)
    print(f"hosts: stopped; namespaces deleted ({mode})", file=sys.stderr)


# -- loglab readback ------------------------------------------------------------------------------

def readback(
    servers: str = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs."),
    subject: str = typer.Option("logs.>", help="A host's subject (logs.h1) or the whole stream (logs.>)."),
    print_records: bool = typer.Option(False, "--print", help="Print every record as HOST<TAB>LINE."),
    hosts: Optional[str] = typer.Option(None, "--expect-hosts", help="Check the sequences: hosts that ran producers (h1,h2,...)."),
    producers: int = typer.Option(0, min=0, help="With --expect-hosts: producers per host (ids PREFIX0..)."),
    count: int = typer.Option(0, min=0, help="With --expect-hosts: messages per producer."),
    prefix: str = typer.Option("p", help="With --expect-hosts: the producers' id prefix."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the check (per producer) as JSON here."),
) -> None:
    from .hosts import run_async
    from .readback import check, expected_for, exactly_once, format_check, read_stream

    urls = server_urls(servers)
    on_record = (lambda host, data: sys.stdout.write(f"{host}\t{data.decode(errors='replace')}\n")) if print_records else None
    read, records = run_async(lambda: read_stream(urls, subject, on_record=on_record))
    expected = expected_for(hosts.split(","), producers, count, prefix) if hosts else {}
    result = check(records, expected)
    if json_out is not None:
        json_out.write_text(json.dumps({"read": {k: v for k, v in vars(read).items() if k != "seq"}, "check": result.to_dict()}, indent=2) + "\n")
    if hosts:
        print(format_check(read, result), file=sys.stderr if print_records else sys.stdout)
        if not exactly_once(result):
            raise typer.Exit(1)
    else:
        per_host = ", ".join(f"{h} {n}" for h, n in sorted(read.per_host.items()))
        print(f"readback: {read.messages} messages ({per_host or 'none'}); {result.duplicates} duplicate (host, producer, seq)",
              file=sys.stderr if print_records else sys.stdout)  # fmt: skip


READBACK_HELP = ("Read the LOGS stream back (a subject or all of it): count per host, print records with --print, and "
                 "with --expect-hosts/--producers/--count check each (host, producer) sequence like the sequence check "
                 "of one aggregator's output (missing, duplicates, reordered). Exit 1 if the check fails.")  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add the shipping lab's commands to ``loglab``."""
    app.add_typer(nats_app, name="nats")
    app.add_typer(hosts_app, name="hosts")
    app.command("readback", help=READBACK_HELP)(readback)
