"""Zenoh settings of a secured bridge: mutual TLS, the refusal of plain listening, per-robot access control.

Identity is the common name of the certificate a peer presented on its TLS link (Zenoh reports it
as the link's `auth_identifier`); a robot's is its name, which is also the first component of its
topics' names (`/r1/features` belongs to `r1`). The bridge that listens (the server) gets Zenoh's
access control, default deny: robot `r` may declare subscriptions to and receive only the keys of
`r` that the server sends, and put only on the keys the server receives; nothing else (queries,
other keys) passes. Which robot's keys a put may use is checked by the bridge itself, sample by
sample (`Sender`), so that every such message is dropped and counted.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError

TLS_FILES = ("tls_root_ca", "tls_certificate", "tls_private_key")


def endpoint_host(endpoint: str) -> tuple[str, str]:
    """`tls/192.168.1.10:7447` -> ("tls", "192.168.1.10"); `tcp/[::1]:7447#iface=lo` -> ("tcp", "::1")."""
    proto, _, rest = endpoint.partition("/")
    address = rest.split("?")[0].split("#")[0]
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return proto, host.strip("[]")


def is_loopback(endpoint: str) -> bool:
    host = endpoint_host(endpoint)[1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: assume it is reachable from outside


def check_endpoints(listen: list[str], connect: list[str], tls: bool, insecure: bool) -> None:
    """With certificates every endpoint is tls/; without, listening beyond loopback needs `insecure`."""
    if tls:
        plain = [e for e in listen + connect if endpoint_host(e)[0] != "tls"]
        if plain:
            raise ConfigError(f"TLS certificates are set, but {plain} are not tls/ endpoints: write them as "
                              f"tls/<host>:<port>")
        return
    exposed = [e for e in listen if not is_loopback(e)]
    if exposed and not insecure:
        raise ConfigError(f"refusing to listen on {exposed} without TLS: anyone who reaches it could publish "
                          "features and read every robot's detections. Set tls_root_ca, tls_certificate and "
                          "tls_private_key (split-perception fleet-certs makes them), or insecure: true "
                          "(for tests and closed networks only)")


def tls_files(given: dict[str, str]) -> dict[str, Path] | None:
    """The three TLS files (absolute, each readable), or None when none is set; one clear error otherwise."""
    set_ = {k: v for k, v in given.items() if v}
    if not set_:
        return None
    missing = [k for k in TLS_FILES if k not in set_]
    if missing:
        raise ConfigError(f"TLS needs {', '.join(TLS_FILES)}; {', '.join(missing)} not set")
    out = {}
    for k in TLS_FILES:
        path = Path(set_[k]).expanduser().resolve()
        try:
            with open(path, "rb") as f:
                if not f.read(1):
                    raise OSError("empty file")
        except OSError as exc:
            raise ConfigError(f"{k}: cannot read {path}: {exc.strerror or exc}") from None
        out[k] = path
    return out


def tls_config(files: dict[str, Path]) -> dict:
    """`transport/link/tls`: the fleet CA verifies the peer, both ways (mutual TLS)."""
    key, cert = str(files["tls_private_key"]), str(files["tls_certificate"])
    return {"root_ca_certificate": str(files["tls_root_ca"]), "enable_mtls": True,
            "listen_private_key": key, "listen_certificate": cert,
            "connect_private_key": key, "connect_certificate": cert}


def owner(topic: str) -> str | None:
    """The robot a fully qualified topic belongs to: its first name component (`/r1/features` -> r1)."""
    parts = topic.strip("/").split("/")
    return parts[0] if len(parts) > 1 else None


def access_control(incoming: dict[str, str], outgoing: dict[str, str], servers: list[str] = (),
                   prefix: str = "split_perception") -> dict:
    """Zenoh `access_control` of the listening bridge. `incoming` / `outgoing`: Zenoh key -> owner
    (the robots' keys this bridge receives / sends). Default deny; per robot: put on the keys this
    bridge receives (whose they are is checked per sample, see `Sender`), declare subscriptions to
    and receive only its own outgoing keys; this bridge's own subscriptions are announced to all.
    The other `servers` of the fleet (by certificate name) exchange only the liveliness tokens
    that say which server serves which robot (link/failover.py)."""
    mine = defaultdict(list)
    for key, who in outgoing.items():
        mine[who].append(key)
    rules = []
    shared = []
    if incoming:
        rules += [{"id": "put_incoming", "messages": ["put"], "flows": ["ingress"], "permission": "allow",
                   "key_exprs": sorted(incoming)},
                  {"id": "announce_subscriptions", "messages": ["declare_subscriber"], "flows": ["egress"],
                   "permission": "allow", "key_exprs": sorted(incoming)}]
        shared = ["put_incoming", "announce_subscriptions"]
    policies = []
    for r in sorted(set(incoming.values()) | set(outgoing.values())):
        own = []
        if mine[r]:
            rules += [{"id": f"subscribe_{r}", "messages": ["declare_subscriber"], "flows": ["ingress"],
                       "permission": "allow", "key_exprs": sorted(mine[r])},
                      {"id": f"receive_{r}", "messages": ["put"], "flows": ["egress"], "permission": "allow",
                       "key_exprs": sorted(mine[r])}]
            own = [f"subscribe_{r}", f"receive_{r}"]
        policies.append({"rules": shared + own, "subjects": [r]})
    if servers:
        rules.append({"id": "servers_liveliness", "messages": ["liveliness_token", "declare_liveliness_subscriber",
                                                                "liveliness_query"],
                      "flows": ["egress", "ingress"], "permission": "allow", "key_exprs": [f"{prefix}/_fleet/**"]})
        policies += [{"rules": ["servers_liveliness"], "subjects": [s]} for s in servers]
    return {"enabled": True, "default_permission": "deny", "rules": rules,
            "subjects": [{"id": p["subjects"][0], "cert_common_names": p["subjects"]} for p in policies],
            "policies": policies}


class Sender:
    """Which robot sent a sample: the certificate name of the link its Zenoh id came over."""

    def __init__(self, session):
        self._session = session
        self._names: dict[str, str | None] = {}

    def identity(self, sample) -> str | None:
        info = sample.source_info
        if info is None:
            return None
        zid = str(info.source_id.zid)
        if zid not in self._names:  # a new peer: look its link up (ids are random per session, never reused)
            for link in self._session.info.links():
                if link.auth_identifier:
                    self._names[str(link.zid)] = link.auth_identifier
        return self._names.get(zid)
