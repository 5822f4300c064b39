"""More than one server for a fleet: which server serves which robot, from Zenoh liveliness tokens.

Each server's bridge holds, under `<prefix>/_fleet/`:

* `candidate/<robot>/<server>` while it can serve the robot: its decoder subscribes to the robot's
  topics and the robot's bridge is connected to it (the robot's subscription to what the server
  sends it matches);
* `serving/<robot>/<server>` while it serves the robot: it carries the robot's topics both ways and
  subscribes to the robot's features (so the robot sends them to this server alone).

Zenoh removes a server's tokens when its session ends, and when the others have heard nothing from
it for its lease (`LEASE_S`, which a server announces instead of Zenoh's 10 s). The k-th robot (by
name) ranks the servers `servers[k % N]`, the next, ...; its preferred server is the first-ranked
candidate. A server takes a robot when it is the preferred one and no other server serves it, and
lets go as soon as it is not. `claim_delay_s` keeps that exclusive while tokens travel: a server's
own candidacy counts for taking a robot only once it is `claim_delay_s` old (the others'
candidacies and serving tokens have arrived by then), and a server serving a robot lets go for an
earlier-ranked candidate only once it has seen that candidacy for `claim_delay_s` (the newcomer is
ready to take it by then). So:

* a dead server's robots are taken at once by their next candidate, which has long been one;
* a server that returns takes its robots back only after the one that stood in let go: no robot's
  frames go to two servers, so none is decoded twice, and the gap is two token hops;
* two servers cut off from each other while robots reach both each serve those robots until they
  see each other again (then the lower-ranked lets go): the one case of two servers for a robot.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from ..errors import ConfigError

ROOT = "_fleet"
KINDS = ("candidate", "serving")
LEASE_S = 2.0  # a server's Zenoh lease: the others notice a dead or cut-off server within this


def server_settings(cfg) -> None:
    """Zenoh settings of a server of several: links only as configured (never learnt by gossip from
    robots), and the short lease."""
    cfg.insert_json5("scouting/gossip/enabled", "false")
    cfg.insert_json5("transport/link/tx/lease", str(int(LEASE_S * 1000)))


def order(robot_index: int, servers: list[str]) -> list[str]:
    """Servers in the order robot number `robot_index` (0-based, robots sorted by name) ranks them."""
    k = robot_index % len(servers)
    return servers[k:] + servers[:k]


def check_servers(me: str, servers: list[str]) -> None:
    """One clear error for a list of servers that cannot work: `me` missing, a name twice, a bad name."""
    for s in servers:
        if not s or any(c in s for c in "/*$?#"):
            raise ConfigError(f"bad server name {s!r} in servers (a Zenoh key chunk: no '/', '*', '$', '?', '#')")
    if len(set(servers)) != len(servers):
        raise ConfigError(f"servers names a server twice: {servers}")
    if me not in servers:
        raise ConfigError(f"server_name {me!r} is not one of servers {servers}")


class Assignment:
    """This server's share of the robots, kept up to date from the other servers' tokens.

    `able(robot)`: whether this server can serve the robot now (polled every `period_s`).
    `on_change(robot, serving, note)`: called when this server starts serving a robot (after its
    serving token is declared) or stops (before the token goes). `warn(text)`: one line about a
    token on the fleet's keys that names no robot or server of this fleet (ignored and counted).
    Everything runs in one worker thread: Zenoh's callbacks only queue what they saw."""

    def __init__(self, session, prefix: str, me: str, servers: list[str], robots: list[str],
                 able: Callable[[str], bool], on_change: Callable[[str, bool, str], None],
                 warn: Callable[[str], None], claim_delay_s: float = 2.0, period_s: float = 0.2):
        check_servers(me, servers)
        self.me, self.servers = me, list(servers)
        self.orders = {r: order(k, self.servers) for k, r in enumerate(sorted(robots))}
        self.root = f"{prefix}/{ROOT}"
        self.claim_delay_s, self.period_s = claim_delay_s, period_s
        self._able, self._on_change, self._warn = able, on_change, warn
        self._session = session
        self.candidates: dict[str, dict[str, float]] = defaultdict(dict)  # robot -> other server -> seen at
        self.holders: dict[str, set[str]] = defaultdict(set)  # robot -> other servers serving it
        self._candidacy: dict[str, tuple[object, float]] = {}  # robot -> (this server's token, declared at)
        self._serving: dict[str, object] = {}  # robot -> this server's serving token
        self.ignored = 0
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        import zenoh

        self._put = zenoh.SampleKind.PUT
        self._subscriber = session.liveliness().declare_subscriber(f"{self.root}/**", self._events.put,
                                                                   history=True)
        self._worker = threading.Thread(target=self._run, name="fleet-assignment", daemon=True)
        self._worker.start()

    def serving(self, robot: str | None) -> bool:
        return robot in self._serving

    def served(self) -> list[str]:
        return sorted(self._serving)

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._note(self._events.get(timeout=self.period_s))
                while True:  # all that is waiting, then one decision
                    self._note(self._events.get_nowait())
            except queue.Empty:
                pass
            if not self._closed.is_set():
                self._decide(time.monotonic())

    def _note(self, sample) -> None:
        """Take in one token of another server (and count one that is not of this fleet)."""
        if sample is None:
            return
        key = str(sample.key_expr)
        parts = key[len(self.root) + 1:].split("/")
        if len(parts) == 3 and parts[0] in KINDS and parts[1] in self.orders and parts[2] in self.servers:
            kind, robot, server = parts
            if server == self.me:  # this server's own tokens
                return
            if kind == "candidate" and sample.kind == self._put:
                self.candidates[robot].setdefault(server, time.monotonic())
            elif kind == "candidate":
                self.candidates[robot].pop(server, None)
            else:
                (self.holders[robot].add if sample.kind == self._put else self.holders[robot].discard)(server)
        elif sample.kind == self._put:
            self.ignored += 1
            self._warn(f"ignored the liveliness token {key}: not <candidate|serving>/<robot>/<server> of robots "
                       f"{sorted(self.orders)} and servers {self.servers} ({self.ignored} ignored so far)")

    def preferred(self, robot: str, now: float, holding: bool) -> str | None:
        """The first-ranked candidate that counts: this server's own candidacy once `claim_delay_s`
        old (unless it serves the robot already), another's at once, or, when this server serves the
        robot, once seen for `claim_delay_s`."""
        for s in self.orders[robot]:
            if s == self.me:
                mine = self._candidacy.get(robot)
                if mine and (holding or now - mine[1] >= self.claim_delay_s):
                    return s
            elif s in self.candidates[robot] and (not holding or now - self.candidates[robot][s] >= self.claim_delay_s):
                return s
        return None

    def _token(self, kind: str, robot: str):
        return self._session.liveliness().declare_token(f"{self.root}/{kind}/{robot}/{self.me}")

    def _decide(self, now: float) -> None:
        for robot in self.orders:
            able = self._able(robot)
            if able and robot not in self._candidacy:
                self._candidacy[robot] = (self._token("candidate", robot), now)
            holding = robot in self._serving
            first = self.preferred(robot, now, holding) if able else None
            if holding and first != self.me:
                self._release(robot, f"{first} ranks before {self.me} for it" if first else
                              f"{self.me} cannot serve it now (its decoder or the robot's link is gone)")
            elif not holding and first == self.me and not self.holders[robot]:
                self._serving[robot] = self._token("serving", robot)
                others = sorted(self.candidates[robot])
                self._on_change(robot, True, f"first of {self.orders[robot]} that can serve it; other candidates "
                                             f"{others or 'none'}")
            if not able and robot in self._candidacy:
                self._candidacy.pop(robot)[0].undeclare()

    def _release(self, robot: str, note: str) -> None:
        token = self._serving.pop(robot)
        self._on_change(robot, False, note)  # carrying stops before the others can know
        token.undeclare()

    def close(self) -> None:
        """Let go of every robot (the others take them at once) and of this server's tokens."""
        self._closed.set()
        self._events.put(None)
        self._worker.join()
        for robot in list(self._serving):
            self._release(robot, f"{self.me} stops")
        for token, _ in self._candidacy.values():
            token.undeclare()
        self._candidacy.clear()
        self._subscriber.undeclare()
