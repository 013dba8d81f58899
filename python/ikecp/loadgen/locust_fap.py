"""A Locust user that is a femtocell: distributed IKEv2 load with Locust's master and workers.

Run it with ``locust -f "$(ikecp locustfile)" --host 127.0.0.1 --ikecp-port 500 ...``; add
``--master`` on one machine and ``--worker --master-host ...`` on the others to spread the
FAPs. Each Locust user is one simulated FAP with its own identity and its own two UDP sockets
(IKE port and NAT-T port), driving the sans-IO engine (``ikecp.engine.IkeSa``) directly: no
asyncio, just gevent-patched sockets, so thousands of users share one Locust process.

Every exchange the FAP completes or gives up on is one Locust request event (request type
``IKEv2``): ``handshake`` is IKE_SA_INIT + IKE_AUTH with CP and the first CHILD_SA, timed
from the first datagram to the CHILD_SA; with ``--ikecp-rekey``, ``child rekey`` and ``ike
rekey`` are the CREATE_CHILD_SA exchanges that replace the CHILD SA and then the IKE SA;
``delete`` is the INFORMATIONAL DELETE at the end of a hold. A failure carries its cause
(``auth failure``, ``notify NO_PROPOSAL_CHOSEN``, ``timeout (no answer)`` ...), as in
``ikecp loadgen``'s report.

Locust is an optional dependency (``pip install 'ikecp[locust]'``): importing this module
imports Locust, which monkey-patches the standard library for gevent. Nothing else in ikecp
imports it.
"""

from __future__ import annotations

import dataclasses
import itertools
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import User, constant, events, stats, task
from locust.exception import StopUser
from locust.runners import STATE_RUNNING, LocalRunner

from ikecp import framing
from ikecp.engine import IkeSa
from ikecp.events import (
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    IkeSaRekeyed,
    SaDeleted,
    SaFailed,
    failure_cause,
)
from ikecp.loadgen.generator import (
    DEFAULT_PSK,
    LoadConfig,
    base_settings,
    check_target,
    identity,
)

REQUEST_TYPE = "IKEv2"


class IkeExchangeError(Exception):
    """What Locust lists in its failures table: the cause, as ``ikecp loadgen`` names it."""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser  # Locust's own parser: only it knows include_in_web_ui
    g.add_argument("--ikecp-port", type=int, default=500, include_in_web_ui=True,
                   help="the SeGW's IKE port (default 500)")
    g.add_argument("--ikecp-natt-port", type=int, default=4500, include_in_web_ui=True,
                   help="the SeGW's NAT-T port (default 4500)")
    g.add_argument("--ikecp-psk", default=DEFAULT_PSK.decode(), include_in_web_ui=False,
                   help="pre-shared key (default: ikecp loadgen's)")
    g.add_argument("--ikecp-source", default="127.0.0.1", include_in_web_ui=False,
                   help="local address the FAPs bind (default 127.0.0.1)")
    g.add_argument("--ikecp-id-template", default="locust-fap-{n}@lab.example",
                   help="FAP identity; {n} becomes <worker>-<user>")
    g.add_argument("--ikecp-handshakes", type=int, default=0, include_in_web_ui=True,
                   help="handshakes per user, then the user stops; a single-process run "
                   "quits when every user is done (0: until the run ends)")
    g.add_argument("--ikecp-hold", type=float, default=0.0, include_in_web_ui=True,
                   help="seconds to keep each SA before deleting it")
    g.add_argument("--ikecp-rekey", action="store_true", default=False,
                   include_in_web_ui=True,
                   help="after each handshake, rekey the CHILD SA, then the IKE SA")
    g.add_argument("--ikecp-timeout", type=float, default=10.0,
                   help="give up on an exchange after this many seconds")
    g.add_argument("--ikecp-i-own-this-target", action="store_true", default=False,
                   help="allow a target outside loopback and the lab's test networks")


class FapUser(User):
    """One femtocell: handshake, hold, DELETE, again."""

    host = "127.0.0.1"
    wait_time = constant(0)
    _numbers = itertools.count()
    _running = 0  # users of this process that have not used up their quota

    def on_start(self) -> None:
        FapUser._running += 1
        opts = self.environment.parsed_options
        self.cfg = LoadConfig(target=self.host or "127.0.0.1", port=opts.ikecp_port,
                              natt_port=opts.ikecp_natt_port, psk=opts.ikecp_psk.encode(),
                              timeout=opts.ikecp_timeout, source=opts.ikecp_source,
                              i_own_this_target=opts.ikecp_i_own_this_target)
        check_target(self.cfg.target, i_own_this_target=self.cfg.i_own_this_target)
        worker = getattr(self.environment.runner, "worker_index", 0)
        self.name = opts.ikecp_id_template.format(n=f"{worker}-{next(self._numbers)}")
        self.settings = dataclasses.replace(base_settings(self.cfg),
                                            local_id=identity(self.name))
        self.quota = opts.ikecp_handshakes
        self.hold = opts.ikecp_hold
        self.rekey = opts.ikecp_rekey
        self.done = 0
        self.socks: dict[int, socket.socket] = {}
        self._port_of: dict[socket.socket, int] = {}

    def on_stop(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()
        self._port_of.clear()

    @task
    def handshake(self) -> None:
        if self.quota and self.done >= self.quota:
            self._finish()
        self.done += 1
        cfg = self.cfg
        self.sa = IkeSa.initiator(self.settings, (cfg.source, cfg.port),
                                  (cfg.target, cfg.port))
        self.others: list[IkeSa] = []
        if not self._exchange("handshake", ChildSaEstablished, lambda sa: None):
            return
        if self.rekey and not (self._exchange("child rekey", ChildSaRekeyed,
                                              lambda sa: sa.rekey_child())
                               and self._exchange("ike rekey", IkeSaRekeyed,
                                                  lambda sa: sa.rekey())):
            return
        if self.hold:
            self._idle(time.monotonic() + self.hold)
        if self.sa.established:
            self._exchange("delete", SaDeleted, lambda sa: sa.delete())

    def _finish(self) -> None:
        """Quota done: stop this user; the last user of a single-process run also quits
        Locust (distributed runs end with --run-time or the web UI's stop)."""
        FapUser._running -= 1
        runner = self.environment.runner
        if isinstance(runner, LocalRunner) and FapUser._running == 0 \
                and runner.state == STATE_RUNNING:  # every user spawned, and every one done
            # after the CSV writer's next round, so the file holds the last requests
            gevent.spawn_later(stats.CSV_STATS_INTERVAL_SEC + 0.5, runner.quit)
        raise StopUser

    # --- driving the FAP's SAs over its sockets ----------------------------------------------
    # ``self.sa`` is the current IKE SA; ``self.others`` the ones an IKE rekey replaced,
    # driven until their DELETE is done.

    def _exchange(self, name: str, goal: type, start: Callable[[IkeSa], None]) -> bool:
        """``start`` an exchange on the current SA and run until it emits ``goal``; report
        it as one Locust request."""
        t0 = time.perf_counter()
        start(self.sa)
        cause, received = self._run(goal, time.monotonic() + self.cfg.timeout)
        events.request.fire(request_type=REQUEST_TYPE, name=name,
                            response_time=(time.perf_counter() - t0) * 1000.0,
                            response_length=received,
                            exception=IkeExchangeError(cause) if cause else None, context={})
        return cause is None

    def _run(self, goal: type, deadline: float) -> tuple[str | None, int]:
        received = 0
        while True:
            now = time.monotonic()
            self._send(now)
            sa = self.sa
            while (ev := sa.next_event()) is not None:
                if isinstance(ev, goal):
                    if isinstance(ev, IkeSaRekeyed) and isinstance(ev.sa, IkeSa):
                        self.others.append(sa)  # the old SA sends its DELETE
                        self.sa = ev.sa
                    return None, received
                if isinstance(ev, (SaFailed, ChildSaFailed)):
                    return failure_cause(ev), received
                if isinstance(ev, SaDeleted):
                    return "deleted by the SeGW", received
            if now >= deadline:
                return "timeout (handshake time limit)", received
            received += self._wait(deadline)

    def _idle(self, until: float) -> None:
        """Hold the SA: answer the SeGW (liveness checks, DELETE) until ``until``."""
        while self.sa.established and time.monotonic() < until:
            self._send(time.monotonic())
            while self.sa.next_event() is not None:
                pass
            self._wait(until)

    def _send(self, now: float) -> None:
        for sa in (self.sa, *self.others):
            for d in sa.datagrams_to_send(now):
                self._sock(d.local_port).sendto(d.wire(), d.remote)
            if sa is not self.sa:
                while sa.next_event() is not None:
                    pass
        self.others = [sa for sa in self.others if not sa.closed]

    def _wait(self, deadline: float) -> int:
        """Read what arrives before the next SA timer (or ``deadline``), then run timers.
        Returns the octets received."""
        sas = (self.sa, *self.others)
        timers = [t for sa in sas if (t := sa.next_timer()) is not None]
        until = min((deadline, *timers))
        ready, _, _ = select.select(list(self.socks.values()), [], [],
                                    max(0.0, until - time.monotonic()))
        got = 0
        now = time.monotonic()
        for s in ready:
            try:
                wire, addr = s.recvfrom(65535)
            except OSError:
                continue  # ICMP unreachable reported on the socket: the timers decide
            port = self._port_of[s]
            if port == self.cfg.natt_port:
                kind, wire = framing.classify(wire)
                if kind is not framing.Kind.IKE:
                    continue
            got += len(wire)
            # Our SPI is SPIi in every SA this FAP started (IKE rekeys included).
            target = next((sa for sa in sas if sa.spi_i == wire[:8]), self.sa)
            target.receive_datagram(wire, (addr[0], addr[1]), now, port)
        for sa in sas:
            t = sa.next_timer()
            if t is not None and now >= t:
                sa.handle_timer(now)
        return got

    def _sock(self, logical_port: int) -> socket.socket:
        """This FAP's socket for the IKE or the NAT-T port, kept for all its handshakes."""
        s = self.socks.get(logical_port)
        if s is None:
            host = self.cfg.source
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_DGRAM)
            s.bind((host, 0))
            self.socks[logical_port] = s
            self._port_of[s] = logical_port
        return s
