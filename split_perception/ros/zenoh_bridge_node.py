"""Zenoh bridge node: carries chosen ROS topics across a wide-area link over a Zenoh session.

DDS discovery stays local to each side (it does not cross the internet, most cellular links or
routed networks); one bridge on each side forwards the topics that must cross, as the serialized
ROS messages. Robot: `to_zenoh: [features]`, `from_zenoh: [link_status, detections, features_ack]`; server: the
reverse. Sensor streams (features, images) go best-effort and are dropped when the link is
congested, like the sensor-data QoS; small control topics (link_status, detections) go reliable.
Payloads from Zenoh are deserialized before they are published, so a bad one is counted, not
passed on.

Secured (`tls_*` set): mutual TLS with the fleet's certificates (`split-perception fleet-certs`),
and the bridge that listens (the server) enforces per-robot access control: Zenoh's, plus a check
of each sample's sender against the robot its key belongs to (see security/zenoh_tls.py).
Listening beyond loopback without TLS is refused unless `insecure` is set.

One of several servers (`server_name`, `servers`): the bridge carries a robot's topics only while
it serves that robot, and subscribes to the robot's features only then, so a robot's frames cross
its link once, to one server (see link/failover.py).
"""

from __future__ import annotations

import importlib
import json
import threading

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message

from ..errors import ConfigError
from ..health import Counters
from ..link.failover import Assignment, check_servers, server_settings
from ..security.zenoh_tls import (
    TLS_FILES,
    Sender,
    access_control,
    check_endpoints,
    owner,
    tls_config,
    tls_files,
)
from .common import qos_from, run_node
from .diagnostics import Diagnostics

# topic (its last name components) -> message type; others are given as `topic=pkg/msg/Type`
KNOWN_TYPES = {"features": "split_perception/msg/EncodedFeatures", "link_status": "split_perception/msg/LinkStatus",
               "detections": "split_perception/msg/Detection2DArray", "segmentation": "sensor_msgs/msg/Image",
               "annotated": "sensor_msgs/msg/Image", "image/compressed": "sensor_msgs/msg/CompressedImage",
               "image": "sensor_msgs/msg/Image", "link_bandwidth": "std_msgs/msg/Float64",
               "features_ack": "split_perception/msg/FrameAck"}
STREAMS = {"split_perception/msg/EncodedFeatures", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}
MODES = ("peer", "client")


def parse_topic(entry: str) -> tuple[str, str]:
    """`features` or `camera/raw=sensor_msgs/msg/Image` -> (topic, type name)."""
    topic, _, type_name = entry.partition("=")
    topic = topic.strip()
    if type_name:
        return topic, type_name.strip()
    for suffix in sorted(KNOWN_TYPES, key=len, reverse=True):
        if topic == suffix or topic.endswith("/" + suffix):
            return topic, KNOWN_TYPES[suffix]
    raise ConfigError(f"no message type known for topic {topic!r}: write it as {topic}=<pkg>/msg/<Type>")


def message_class(type_name: str):
    """`pkg/msg/Type` -> the generated Python class."""
    try:
        pkg, kind, name = type_name.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        raise ConfigError(f"unknown message type {type_name!r} (expected pkg/msg/Type of an installed package)") from None


class ZenohBridgeNode(Node):
    def __init__(self):
        super().__init__("zenoh_bridge")
        d = ParameterDescriptor
        mode = self.declare_parameter("mode", "peer", d(
            description="Zenoh mode: peer (connects directly) or client (through a Zenoh router)", read_only=True)).value
        connect = self._strings("connect", "Zenoh endpoints to connect to, e.g. [tls/192.168.1.10:7447]")
        listen = self._strings("listen", "Zenoh endpoints to listen on, e.g. [tls/0.0.0.0:7447]")
        to_zenoh = self._strings("to_zenoh", "ROS topics sent out over Zenoh ([topic] or [topic=pkg/msg/Type])")
        from_zenoh = self._strings("from_zenoh", "topics received over Zenoh and published on ROS")
        self.key_prefix = self.declare_parameter("key_prefix", "split_perception", d(
            description="Zenoh key of a topic: <key_prefix><fully qualified topic name>", read_only=True)).value
        scouting = self.declare_parameter("multicast_scouting", False, d(
            description="find peers by UDP multicast too (off: only the endpoints given)", read_only=True)).value
        given = {k: self.declare_parameter(k, "", d(
            description=what + " (PEM file; the three together turn on mutual TLS)", read_only=True)).value
            for k, what in zip(TLS_FILES, ("the fleet's CA certificate", "this bridge's certificate",
                                           "this bridge's private key"))}
        insecure = self.declare_parameter("insecure", False, d(
            description="allow listening beyond loopback without TLS (tests and closed networks only)",
            read_only=True)).value
        self.server_name = self.declare_parameter("server_name", "", d(
            description="this server's name among `servers` (more than one server for a fleet; with TLS, its "
                        "certificate's name); empty: one server, it carries every robot of its topics",
            read_only=True)).value
        servers = self._strings("servers", "every server of the fleet, the same list on each: the k-th robot (by "
                                           "name) is served by the first of servers[k % N], the next, ... that can")
        claim_delay = self.declare_parameter("claim_delay_s", 2.0, d(
            description="one of several servers: it takes a robot once it has been able to serve it (decoder "
                        "subscribed, robot connected) this long, and lets one go for an earlier-ranked server once "
                        "it has seen that one able this long (the other servers' tokens arrive meanwhile)",
            read_only=True, floating_point_range=[FloatingPointRange(from_value=0.0, to_value=60.0)])).value
        diagnostics_period = self.declare_parameter("diagnostics_period_s", 1.0, d(
            description="period of the DiagnosticStatus on /diagnostics; 0 = off", read_only=True)).value
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "client" and not connect:
            raise ConfigError("mode client needs `connect` (the Zenoh router's endpoint)")
        outgoing = [parse_topic(e) for e in to_zenoh]
        incoming = [parse_topic(e) for e in from_zenoh]
        both = {self.resolve_topic_name(t) for t, _ in outgoing} & {self.resolve_topic_name(t) for t, _ in incoming}
        if both:
            raise ConfigError(f"{sorted(both)} in both to_zenoh and from_zenoh: the bridge would echo them")
        if not outgoing and not incoming:
            raise ConfigError("nothing to bridge: set to_zenoh and/or from_zenoh")
        classes = {t: message_class(n) for t, n in outgoing + incoming}
        files = tls_files(given)
        check_endpoints(listen, connect, files is not None, insecure)
        # the secured bridge that listens serves robots: each robot's keys are those under its name
        self.check_sender = files is not None and bool(listen)
        owners = {self.resolve_topic_name(t): owner(self.resolve_topic_name(t)) for t, _ in outgoing + incoming}
        if self.server_name:
            check_servers(self.server_name, servers)
        elif servers:
            raise ConfigError(f"servers {servers} given without server_name (this server's name among them)")
        if (self.check_sender or self.server_name) and None in owners.values():
            loose = sorted(t for t, o in owners.items() if o is None)
            raise ConfigError(f"a {'server of several' if self.server_name else 'secured bridge that listens'} "
                              f"serves robots: every topic must be under a robot's name (/<robot>/features, the "
                              f"robot's certificate name); {loose} are not")
        self._robots = sorted({o for o in owners.values() if o})
        if self.server_name:
            # the robot's subscription to what this server sends it says the robot is connected
            mute = sorted(r for r in self._robots if not any(owners[self.resolve_topic_name(t)] == r
                                                             for t, _ in outgoing))
            if mute:
                raise ConfigError(f"a server of several needs, for every robot, a topic in to_zenoh (e.g. "
                                  f"/<robot>/link_status): the robot's subscription to it says it is connected; "
                                  f"{mute} have none")
        self._servers, self._claim_delay = servers, claim_delay
        self.assignment = None
        import zenoh

        self._zenoh, self.mode, self.connect = zenoh, mode, connect
        cfg = zenoh.Config()
        cfg.insert_json5("mode", json.dumps(mode))
        cfg.insert_json5("connect/endpoints", json.dumps(connect))
        cfg.insert_json5("listen/endpoints", json.dumps(listen))
        cfg.insert_json5("scouting/multicast/enabled", json.dumps(bool(scouting)))
        # the bridge exists for links between machines: Zenoh's shared-memory shortcut between
        # processes of one host would carry large messages around the link it bridges
        cfg.insert_json5("transport/shared_memory/enabled", "false")
        # a robot may start before its server or router: a peer opens at once and keeps retrying its
        # endpoints; a client waits for its router (in the opening thread, so the node stays responsive)
        cfg.insert_json5("connect/timeout_ms", "-1")
        cfg.insert_json5("connect/exit_on_failure", "false")
        if self.server_name:
            server_settings(cfg)
        if files is not None:
            cfg.insert_json5("transport/link/tls", json.dumps(tls_config(files)))
        if self.check_sender:
            acl = access_control({self._key(t): owners[self.resolve_topic_name(t)] for t, _ in incoming},
                                 {self._key(t): owners[self.resolve_topic_name(t)] for t, _ in outgoing},
                                 servers=[s for s in servers if s != self.server_name], prefix=self.key_prefix)
            cfg.insert_json5("access_control", json.dumps(acl))
        self._lock = threading.Lock()
        self.received = self.forwarded = self.bad = self.not_connected = self.refused = self.not_serving = 0
        self.peers: dict[str, str] = {}  # link -> the certificate name it authenticated with ("" without TLS)
        self._sender = None
        self.by_topic: dict[str, int] = {}
        self.session = None
        self._zenoh_out: dict[str, object] = {}  # topic -> Zenoh publisher, once the session is open
        self._zenoh_in: dict[str, list] = {}  # robot -> its Zenoh subscribers, while this bridge carries it
        self._keep = []  # ROS and Zenoh entities live as long as the node
        for topic, type_name in outgoing:
            self._ros_subscription(topic, classes[topic], type_name in STREAMS)
        ros_pubs = {t: self.create_publisher(classes[t], t, self._qos(n in STREAMS)) for t, n in incoming}
        self.diagnostics = Diagnostics(self, diagnostics_period, self._diagnostics, f"zenoh {mode}",
                                       input_name="messages", bad_name="bad payloads", busy_key="forward_ms")
        described = (f"{mode}, {'mutual TLS' if files else 'no TLS'}"
                     f"{f', server {self.server_name} of {servers}' if self.server_name else ''}"
                     f"{', per-robot access control' if self.check_sender else ''}, connect {connect}, "
                     f"listen {listen}, to zenoh {[self._key(t) for t, _ in outgoing]}, "
                     f"from zenoh {[self._key(t) for t, _ in incoming]}")
        if mode == "client":
            self.get_logger().info(f"waiting for the Zenoh router (or peer) at {connect}")
        self._opener = threading.Thread(target=self._open, args=(cfg, outgoing, incoming, classes, ros_pubs,
                                                                 described), daemon=True)
        self._failed: str | None = None
        self.create_timer(0.5, self._check_open)
        self._opener.start()

    def _check_open(self) -> None:
        """A session that could not open ends the node with one clear line (exit code 2)."""
        if self._failed:
            raise ConfigError(self._failed)

    def _open(self, cfg, outgoing, incoming, classes, ros_pubs, described: str) -> None:
        """Open the session, declare the Zenoh side of every topic, then say ready."""
        try:
            session = self._zenoh.open(cfg)
        except self._zenoh.ZError as exc:  # e.g. a listen endpoint that cannot be bound
            self._failed = f"could not open the Zenoh session ({described}): {exc}"
            return
        self._sender = Sender(session)
        self._keep.append(session.info.declare_link_events_listener(self._link_event, history=True))
        for topic, type_name in outgoing:
            self._zenoh_out[topic] = self._zenoh_publisher(session, topic, type_name in STREAMS)
        self._deliver: dict[str | None, list] = {}  # robot -> [(Zenoh key, deliverer)] of its incoming topics
        self._ends: dict[str | None, tuple[list, list]] = {}  # robot -> (its ROS publishers, its Zenoh publishers)
        for topic, _ in incoming:
            robot = owner(self.resolve_topic_name(topic))
            self._deliver.setdefault(robot, []).append((self._key(topic), self._deliverer(topic, classes[topic],
                                                                                          ros_pubs[topic])))
            self._ends.setdefault(robot, ([], []))[0].append(ros_pubs[topic])
        for topic, _ in outgoing:
            self._ends.setdefault(owner(self.resolve_topic_name(topic)), ([], []))[1].append(self._zenoh_out[topic])
        self.session = session
        if self.server_name:  # a robot's subscribers are declared while this server serves it
            self.assignment = Assignment(session, self.key_prefix, self.server_name, self._servers, self._robots,
                                         able=self._able, on_change=self._assigned, claim_delay_s=self._claim_delay,
                                         warn=lambda text: self.get_logger().warning(text, throttle_duration_sec=5.0))
        else:
            self._keep += [session.declare_subscriber(k, f) for pairs in self._deliver.values() for k, f in pairs]
        self.get_logger().info(f"zenoh_bridge ready: {described}")

    def _able(self, robot: str) -> bool:
        """This server can serve `robot` now: something (its decoder) subscribes to each of the robot's
        topics from Zenoh, and the robot's bridge subscribes to one of those this bridge sends it."""
        ros_pubs, zenoh_pubs = self._ends[robot]
        return all(p.get_subscription_count() for p in ros_pubs) and \
            any(p.matching_status.matching for p in zenoh_pubs)

    def _assigned(self, robot: str, serving: bool, note: str) -> None:
        """Carry a robot's topics (and subscribe to its features) from the moment this server serves it."""
        if serving:
            self._zenoh_in[robot] = [self.session.declare_subscriber(k, f) for k, f in self._deliver.get(robot, [])]
            self.get_logger().info(f"serving {robot}: {note}")
        else:
            for sub in self._zenoh_in.pop(robot, []):
                sub.undeclare()
            self.get_logger().info(f"handed {robot} over: {note}")

    def _serves(self, robot: str | None) -> bool:
        """Whether this bridge carries `robot`'s topics now (always, unless one of several servers)."""
        if not self.server_name:
            return True
        if self.assignment is not None and self.assignment.serving(robot):
            return True
        with self._lock:
            self.not_serving += 1
        return False

    def _link_event(self, event) -> None:
        """Log each peer as it connects and goes, with the certificate name it authenticated with."""
        link = event.link
        name, where = link.auth_identifier or "", f"{link.zid} ({link.dst})"
        with self._lock:
            if event.kind == self._zenoh.SampleKind.PUT:
                self.peers[where] = name
            else:
                self.peers.pop(where, None)
            n = len(self.peers)
        state = "connected" if event.kind == self._zenoh.SampleKind.PUT else "gone"
        self.get_logger().info(f"peer {where} {state}{f', certificate {name}' if name else ''}; {n} connected")

    def _strings(self, name: str, description: str) -> list[str]:
        p = self.declare_parameter(name, Parameter.Type.STRING_ARRAY,
                                   ParameterDescriptor(description=description, read_only=True))
        return [s for s in (p.value or []) if s] if p.type_ != Parameter.Type.NOT_SET else []

    def _key(self, topic: str) -> str:
        return f"{self.key_prefix}{self.resolve_topic_name(topic)}"

    def _count(self, topic: str, ok: bool) -> None:
        with self._lock:
            self.received += 1
            if ok:
                self.forwarded += 1
                self.by_topic[topic] = self.by_topic.get(topic, 0) + 1
            else:
                self.bad += 1

    @staticmethod
    def _qos(stream: bool):
        """Sensor streams best-effort (as the sensor-data QoS), control topics reliable."""
        return qos_from("best_effort", 5) if stream else qos_from("reliable", 10)

    def _zenoh_publisher(self, session, topic: str, stream: bool):
        """Streams: express, dropped under congestion; control topics: reliable, high priority."""
        z = self._zenoh
        return session.declare_publisher(
            self._key(topic), express=stream, priority=z.Priority.DATA if stream else z.Priority.INTERACTIVE_HIGH,
            congestion_control=z.CongestionControl.DROP if stream else z.CongestionControl.BLOCK,
            reliability=z.Reliability.BEST_EFFORT if stream else z.Reliability.RELIABLE)

    def _ros_subscription(self, topic: str, cls, stream: bool) -> None:
        """ROS -> Zenoh: the serialized message as it came from DDS (no deserialization)."""
        name = self.resolve_topic_name(topic)
        robot = owner(name)
        sn = iter(range(1 << 62))  # the source's sequence number

        def forward(data: bytes) -> None:
            if not self._serves(robot):  # another server serves this robot now
                return
            pub = self._zenoh_out.get(topic)
            if pub is None:  # the session is not open yet
                with self._lock:
                    self.not_connected += 1
                return
            # the source names this session, so that a secured server can tell which robot sent it
            pub.put(data, source_info=self._zenoh.SourceInfo(pub.id, next(sn)))
            self._count(name, True)

        self._keep.append(self.create_subscription(cls, topic, forward, self._qos(stream), raw=True))

    def _deliverer(self, topic: str, cls, ros_pub):
        """Zenoh -> ROS: deserialized first, so that only well-formed messages are published."""
        name = self.resolve_topic_name(topic)
        robot = owner(name)

        def deliver(sample) -> None:
            if not self._serves(robot):  # another server serves this robot now
                return
            if self.check_sender:
                sender = self._sender.identity(sample)
                if sender != robot:
                    with self._lock:
                        self.refused += 1
                        refused = self.refused
                    if sender is None:  # one call site per kind: each is throttled on its own
                        self.get_logger().warning(
                            f"{name}: refused a message from an unknown sender (no certificate name for its Zenoh "
                            f"id): only {robot}'s certificate may send it ({refused} refused so far)",
                            throttle_duration_sec=5.0)
                    else:
                        self.get_logger().warning(
                            f"{name}: refused a message from {sender}: only {robot}'s certificate may send it "
                            f"({refused} refused so far)", throttle_duration_sec=5.0)
                    return
            try:
                msg = deserialize_message(sample.payload.to_bytes(), cls)
            except Exception as exc:  # noqa: BLE001 - whatever the payload, the bridge goes on
                self._count(name, False)
                self.get_logger().error(f"{name}: bad payload from Zenoh ({self.bad} so far): {exc}",
                                        throttle_duration_sec=5.0)
                return
            ros_pub.publish(msg)
            self._count(name, True)

        return deliver

    def _diagnostics(self) -> tuple[Counters, dict[str, str]]:
        with self._lock:
            counters = Counters(received=self.received + self.refused, done=self.forwarded,
                                bad=self.bad + self.refused)
            per_topic = {f"forwarded {t}": str(n) for t, n in sorted(self.by_topic.items())}
            waiting, refused, not_serving = str(self.not_connected), str(self.refused), str(self.not_serving)
            names = sorted(n for n in self.peers.values() if n)
            peers = f"{len(self.peers)}" + (f" ({', '.join(names)})" if names else "")
        session = self.session
        return counters, {"zenoh_id": str(session.info.zid()) if session else "not connected",
                          "dropped_before_connected": waiting, "refused_sender": refused,
                          "peers": peers, **per_topic,
                          **({"serving": (", ".join(self.assignment.served()) if self.assignment else "") or "none",
                              "left_to_other_servers": not_serving,
                              "ignored_fleet_tokens": str(self.assignment.ignored if self.assignment else 0)}
                             if self.server_name else {})}

    def close(self) -> None:
        with self._lock:
            summary = ", ".join(f"{t}: {n}" for t, n in sorted(self.by_topic.items())) or "nothing"
        self.get_logger().info(f"forwarded {summary}; {self.bad} bad payloads, {self.refused} refused from a sender "
                               f"that may not send them, {self.not_connected} dropped before Zenoh was connected"
                               + (f", {self.not_serving} left to other servers" if self.server_name else ""))
        if self.assignment is not None:
            self.assignment.close()
        if self.session is not None:
            self.session.close()


def main(args=None) -> int:
    return run_node(ZenohBridgeNode, args)
