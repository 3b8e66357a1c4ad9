"""``distributor-ctl``: the membership bucket from the command line: list the analyzers, register,
deregister, change a weight. The same operations as the HTTP front's, on the same bucket, so every
distributor replica follows the change at once."""

from __future__ import annotations

import asyncio
import sys

import typer

from shipper.stream import server_urls

from . import membership as mb

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Read and change the analyzers' membership and weights in the bucket ANALYZERS.")  # fmt: skip

SERVERS = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs.")


def _run(servers: str, action):
    async def go():
        import nats

        nc = await nats.connect(server_urls(servers), connect_timeout=3, max_reconnect_attempts=3)
        try:
            kv, _ = await mb.ensure_buckets(nc.jetstream(timeout=5), 1)
            return await action(kv)
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except (ValueError, KeyError) as exc:
        print(f"distributor-ctl: error: {exc if not isinstance(exc, KeyError) else f'analyzer {exc.args[0]} is not registered'}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command("list", help="Every analyzer in the bucket: weight, online or why not, last heartbeat, what it reported.")
def list_(servers: str = SERVERS) -> None:
    async def read(kv):
        view = mb.MembershipView()
        membership = mb.Membership(kv, view)
        await membership.start()
        await membership.stop()
        return view.describe()

    rows = _run(servers, read)
    if not rows:
        print("no analyzer registered")
    for aid, a in rows.items():
        beat = a["analyzer_counters"]
        age = f"{a['last_heartbeat_age_s']:.1f} s ago" if a["last_heartbeat_age_s"] is not None else "never"
        state = "online" if a["online"] else f"offline ({a['offline_reason']})"
        print(f"{aid}\tweight {a['weight']}\t{state}\theartbeat {age}\tmessages {beat.get('messages', '-')}")


@app.command(help="Register ID with weight W (or re-register: the weight is replaced).")
def register(analyzer_id: str = typer.Argument(..., metavar="ID"), weight: float = typer.Argument(..., metavar="W"), servers: str = SERVERS) -> None:
    value = _run(servers, lambda kv: mb.register(kv, analyzer_id, weight, by="distributor-ctl"))
    print(f"registered {value['id']} weight {value['weight']:g}")


@app.command(help="Deregister ID (its heartbeat and down mark go too). Exit 1 if it was not registered.")
def deregister(analyzer_id: str = typer.Argument(..., metavar="ID"), servers: str = SERVERS) -> None:
    if not _run(servers, lambda kv: mb.deregister(kv, mb.check_id(analyzer_id))):
        print(f"distributor-ctl: analyzer {analyzer_id} was not registered", file=sys.stderr)
        raise typer.Exit(1)
    print(f"deregistered {analyzer_id}")


@app.command(help="Set ID's weight to W; every distributor starts a new epoch with it at once. Exit 1 if ID is not registered.")
def weight(analyzer_id: str = typer.Argument(..., metavar="ID"), weight: float = typer.Argument(..., metavar="W"), servers: str = SERVERS) -> None:
    value = _run(servers, lambda kv: mb.set_weight(kv, mb.check_id(analyzer_id), weight))
    print(f"{value['id']} weight {value['weight']:g}")


def run() -> None:
    app()
