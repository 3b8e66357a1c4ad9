"""``distributor-http``: the HTTP front of the distribute stage (FastAPI on uvicorn), with the Python
reference design's interface.

==========================  ====================================================================
``POST /message/send``      a JSON log message (an object), or a JSON array of them: each is
                            published into ``LOGS`` on ``logs.<host>`` (``host`` from the message
                            when it is one subject token, else ``--host``); the answer comes once
                            the stream has stored every one (``{"published": n}``), 400 on a body
                            that is not that, 503 when the stream does not acknowledge in time
``GET /analyzer/stats``     per analyzer: weight, online state (and why not), messages routed and
                            acknowledged (summed over the distributor replicas), share of the
                            acknowledged messages against its share of the weights, failures, ack
                            latency; the distributors' totals
``POST /analyzer/register`` ``{"id": ..., "weight": ...}``
``POST /analyzer/deregister`` ``{"id": ...}`` (404 when not registered)
``PUT /analyzer/{id}/weight`` ``{"weight": ...}`` (404 when not registered)
==========================  ====================================================================

Membership and weights are read from and written to the bucket ``ANALYZERS`` (watched, so a change
by anyone shows at once); the distributors' counters from ``DISTRIBUTORS`` (each replica writes its
own every stats interval). Request bodies are parsed with orjson, not pydantic models: the ingress's
time per message is what its throughput is made of.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Optional

import orjson
import typer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shipper.stream import STREAM, server_urls, subject_for, valid_host

from . import membership as mb

MAX_BODY = 16 << 20
PUBLISH_TIMEOUT_S = 10.0


class State:
    """What the app holds: the NATS connection, the buckets, and the watched views."""

    def __init__(self, servers: list[str], default_host: str, replicas: int) -> None:
        self.servers = servers
        self.default_host = default_host
        self.replicas = replicas
        self.nc = None
        self.js = None
        self.kv = None
        self.stats_kv = None
        self.view = mb.MembershipView()
        self.membership: mb.Membership | None = None
        self.distributors: dict[str, dict] = {}
        self.tasks: list[asyncio.Task] = []
        self.published = 0
        self.publish_errors = 0

    async def start(self) -> None:
        import nats

        self.nc = await nats.connect(self.servers, name="distributor-http", max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                                     connect_timeout=2, pending_size=64 << 20, skip_subject_validation=True)  # fmt: skip
        self.js = self.nc.jetstream(timeout=5, publish_async_max_pending=50_000)
        await self.js.stream_info(STREAM)
        self.kv, self.stats_kv = await mb.ensure_buckets(self.js, self.replicas)
        self.membership = mb.Membership(self.kv, self.view)
        await self.membership.start()
        watcher = await self.stats_kv.watchall()
        self.tasks.append(asyncio.create_task(self._watch_stats(watcher)))

    async def _watch_stats(self, watcher) -> None:
        async for entry in watcher:
            if entry is None or not entry.key.startswith(mb.STATS):
                continue
            name = entry.key[len(mb.STATS):]
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self.distributors.pop(name, None)
            else:
                with contextlib.suppress(orjson.JSONDecodeError):
                    self.distributors[name] = orjson.loads(entry.value)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        if self.membership is not None:
            await self.membership.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5)

    async def publish(self, messages: list) -> int:
        futures = []
        for m in messages:
            host = m.get("host") if isinstance(m, dict) else None
            subject = subject_for(host if isinstance(host, str) and valid_host(host) else self.default_host)
            futures.append(await self.js.publish_async(subject, orjson.dumps(m)))
        acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
        self.published += len(acks)
        return len(acks)

    def analyzer_stats(self) -> dict:
        membership = self.view.describe()
        online = {k: v["weight"] for k, v in membership.items() if v["online"]}
        weight_total = sum(online.values())
        now = time.time_ns()
        per: dict[str, dict] = {}
        for d in self.distributors.values():
            for aid, c in d.get("analyzers", {}).items():
                p = per.setdefault(aid, {"routed": 0, "acked": 0, "refused": 0, "failures": 0, "failed_over": 0, "late_acks": 0,
                                         "ack_latency_ms_p50": None, "ack_latency_ms_p99": None})  # fmt: skip
                for k in ("routed", "acked", "refused", "failures", "failed_over", "late_acks"):
                    p[k] += c.get(k, 0)
                lat = c.get("ack_latency_ms") or {}
                for q in ("p50", "p99"):  # the worst replica's: a slow analyzer is slow for every replica
                    v = lat.get(q)
                    key = f"ack_latency_ms_{q}"
                    if v is not None and (p[key] is None or v > p[key]):
                        p[key] = v
        acked_total = sum(p["acked"] for p in per.values())
        analyzers = {}
        for aid in sorted(set(membership) | set(per)):
            m = membership.get(aid, {"weight": None, "online": False, "offline_reason": "not registered", "registered": False})
            p = per.get(aid, {})
            share = p.get("acked", 0) / acked_total if acked_total else None
            weight_share = m["weight"] / weight_total if m["online"] and weight_total else 0.0
            beat = m.get("analyzer_counters") or {}
            analyzers[aid] = {
                "weight": m["weight"], "online": m["online"], "offline_reason": m["offline_reason"], "registered": m["registered"],
                "messages_routed": p.get("routed", 0), "messages_acked": p.get("acked", 0), "share": share,
                "weight_share": weight_share, "share_vs_weight": share / weight_share if share is not None and weight_share else None,
                "failures": p.get("failures", 0), "failed_over": p.get("failed_over", 0), "refused": p.get("refused", 0),
                "late_acks": p.get("late_acks", 0), "ack_latency_ms": {"p50": p.get("ack_latency_ms_p50"), "p99": p.get("ack_latency_ms_p99")},
                "analyzer_reported": {k: beat.get(k) for k in ("messages", "duplicates", "wedged")},
                "last_heartbeat_age_s": m.get("last_heartbeat_age_s"),
            }  # fmt: skip
        totals_keys = ("received", "source_acked", "dead_lettered", "failover_messages", "duplicates_confirmed", "handed_back", "redelivered")
        distributors = {name: {**{k: d.get(k, 0) for k in totals_keys}, "stopped": bool(d.get("stopped_unix_ns")),
                               "age_s": (now - d.get("written_at_unix_ns", now)) / 1e9} for name, d in sorted(self.distributors.items())}  # fmt: skip
        return {"analyzers": analyzers, "distributors": distributors, "ingress": {"published": self.published, "publish_errors": self.publish_errors}}


def make_app(state: State) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        await state.start()
        yield
        await state.stop()

    app = FastAPI(title="loglab distributor", lifespan=lifespan)

    def error(status: int, text: str):
        return JSONResponse({"error": text}, status_code=status)

    def ok(body: dict, status: int = 200):
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def json_body(request: Request):
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None

    @app.post("/message/send")
    async def send(request: Request):
        try:
            data = await json_body(request)
        except ValueError as exc:
            return error(400, str(exc))
        messages = data if isinstance(data, list) else [data]
        if not messages or not all(isinstance(m, dict) for m in messages):
            return error(400, "a JSON object (a log message) or a non-empty array of objects")
        try:
            n = await state.publish(messages)
        except Exception as exc:  # timeout, stream full, disconnected: the client may retry
            state.publish_errors += len(messages)
            return error(503, f"not stored: {type(exc).__name__}: {exc}")
        return ok({"published": n, "stream": STREAM})

    @app.get("/analyzer/stats")
    async def stats():
        return ok(state.analyzer_stats())

    @app.post("/analyzer/register")
    async def register(request: Request):
        try:
            data = await json_body(request)
            value = await mb.register(state.kv, str(data.get("id", "")), data.get("weight"), by="http")
        except (ValueError, AttributeError) as exc:
            return error(400, str(exc))
        await state.membership.caught_up()
        return ok({"registered": value})

    @app.post("/analyzer/deregister")
    async def deregister(request: Request):
        try:
            data = await json_body(request)
            aid = mb.check_id(str(data.get("id", "")))
        except (ValueError, AttributeError) as exc:
            return error(400, str(exc))
        if not await mb.deregister(state.kv, aid):
            return error(404, f"analyzer {aid} is not registered")
        await state.membership.caught_up()
        return ok({"deregistered": aid})

    @app.put("/analyzer/{analyzer_id}/weight")
    async def weight(analyzer_id: str, request: Request):
        try:
            data = await json_body(request)
            mb.check_id(analyzer_id)
            value = await mb.set_weight(state.kv, analyzer_id, data.get("weight") if isinstance(data, dict) else data)
        except KeyError:
            return error(404, f"analyzer {analyzer_id} is not registered")
        except (ValueError, AttributeError) as exc:
            return error(400, str(exc))
        await state.membership.caught_up()  # the next GET /analyzer/stats shows the new weight
        return ok({"updated": value})

    return app


cli = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@cli.command(
    help=(
        "Serve the distribute stage over HTTP (FastAPI on uvicorn, uvloop): POST /message/send publishes a JSON log "
        "message (or an array of them) into the stream LOGS and answers once stored; GET /analyzer/stats shows every "
        "analyzer's weight, online state, messages routed and acknowledged, share against weight, failures and ack "
        "latency; POST /analyzer/register {id, weight}, POST /analyzer/deregister {id} and PUT /analyzer/ID/weight "
        "{weight} change the membership bucket ANALYZERS that every distributor replica follows. Prints 'serving "
        "http://HOST:PORT' on stdout once listening. SIGTERM/SIGINT: stop."
    )
)
def main(
    servers: str = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs."),
    listen: str = typer.Option("127.0.0.1:8080", help="HOST:PORT to listen on."),
    host: str = typer.Option("http", help="The subject token (logs.HOST) for messages without a valid 'host' field."),
    replicas: Optional[int] = typer.Option(None, min=1, max=5, help="Replicas of the buckets if this process creates them (default: the number of --servers URLs, at most 3)."),
) -> None:
    import uvicorn

    from aggregator.procname import set_process_name

    addr, _, port = listen.rpartition(":")
    urls = server_urls(servers)
    if not addr or not port.isdigit() or not urls or not valid_host(host):
        print("distributor-http: error: --listen HOST:PORT, --servers URL[,URL] and a one-token --host are needed", file=sys.stderr)
        raise typer.Exit(2)
    set_process_name("logdisthttp")
    state = State(urls, host, replicas or min(3, len(urls)))
    config = uvicorn.Config(make_app(state), host=addr, port=int(port), loop="none", http="httptools", lifespan="on",
                            access_log=False, log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            print(f"serving http://{addr}:{port} (stream {STREAM}, buckets {mb.BUCKET}, {mb.STATS_BUCKET})", flush=True)
        await task

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    if not server.started:
        raise typer.Exit(1)


def run() -> None:
    cli()
