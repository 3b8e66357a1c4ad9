"""Locust load for the HTTP front: each user is one agent posting log messages to
``POST /message/send``, as fast as the answers come.

    locust -f distributor/locustfile.py --headless --host http://127.0.0.1:8080 -u 20 -r 20 --run-time 30s \\
           --message-size 200 --messages-per-request 1

Options (beside Locust's own): ``--message-size`` bytes per message (the JSON object, padded),
``--messages-per-request`` (1: one message per request, the reference design's interface; more:
an array per request), ``--agent-host`` (the ``host`` field, so the stream subject is
``logs.<agent-host>``). Each agent's messages carry ``producer`` = the agent's id (unique across
Locust processes) and ``seq`` 0, 1, 2, ..., so the analyzers' sequence check applies to HTTP traffic too.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

import orjson
from locust import FastHttpUser, constant, events, task

_RUN = uuid.uuid4().hex[:6]
_AGENTS = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--message-size", type=int, default=200, help="Bytes per JSON message (padded).")
    parser.add_argument("--messages-per-request", type=int, default=1, help="1: one object per request; N: an array of N.")
    parser.add_argument("--agent-host", type=str, default="http", help="The messages' host field (stream subject logs.HOST).")


class Agent(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.size = max(64, opts.message_size)
        self.per_request = max(1, opts.messages_per_request)
        self.host_name = opts.agent_host
        self.agent = f"agent-{_RUN}-{os.getpid()}-{next(_AGENTS)}"
        self.seq = 0

    def _message(self) -> dict:
        now = time.time_ns()
        m = {"ts_ns": now, "intended_ns": now, "host": self.host_name, "producer": self.agent, "seq": self.seq, "level": "info", "msg": ""}
        self.seq += 1
        pad = self.size - len(orjson.dumps(m))
        m["msg"] = "x" * max(0, pad)
        return m

    @task
    def send(self) -> None:
        body = self._message() if self.per_request == 1 else [self._message() for _ in range(self.per_request)]
        self.client.post("/message/send", data=orjson.dumps(body), headers={"Content-Type": "application/json"}, name="/message/send")
