"""One decoder node serving two robots over real DDS: each robot's frames come back on its own topics,
each robot's refusals are counted on its own link_status."""

from __future__ import annotations

from split_perception.codec.packet import Packet
from split_perception.harness.processes import finish_probe, start_node, start_probe, stop, wait_for_log


def test_one_decoder_serves_two_robots_on_their_own_topics(tmp_path, domain, tiny_model_path):
    m = {"model_path": str(tiny_model_path)}
    robots = ["r1", "r2"]
    procs = [start_node("encoder", domain, params=m, namespace=r, log_path=tmp_path / f"encoder_{r}.log")
             for r in robots]
    procs.append(start_node("decoder", domain, params={**m, "robots": robots}, log_path=tmp_path / "decoder.log"))
    bad = Packet(bytes(16), 0, 0.25, 1, 0, (10, 10), (2, 12, 16), b"abc").to_bytes()[:-1] + b"\x00"
    try:
        for log in ["encoder_r1", "encoder_r2"]:
            wait_for_log(tmp_path / f"{log}.log", "encoder ready", 180)
        wait_for_log(tmp_path / "decoder.log", "decoder ready", 180)
        cfgs = {r: {"namespace": r, "seconds": 16, "fps": 4, "seed": k, "await_publishers": ["detections"],
                    "garbage": [{"at": 8.0, "hex": bad.hex()}] if r == "r2" else []}
                for k, r in enumerate(robots)}
        probes = {r: start_probe(cfg, tmp_path, domain, name=f"probe_{r}") for r, cfg in cfgs.items()}
        recs = {r: finish_probe(p, cfgs[r], tmp_path, name=f"probe_{r}") for r, p in probes.items()}
    finally:
        stop(procs)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))
    for r, rec in recs.items():
        sent = {s["stamp"] for s in rec["sent"]}
        got = [d["stamp"] for d in rec["detections"]]
        assert len(got) >= 5, (r, logs)
        assert set(got) <= sent, (r, logs)  # a robot only ever gets its own frames back
        assert rec["link_status"] and max(s["received"] for s in rec["link_status"]) >= 5, (r, logs)
    assert max(s["bad"] for s in recs["r2"]["link_status"]) == 1, logs  # the forged packet, on r2 alone
    assert max(s["bad"] for s in recs["r1"]["link_status"]) == 0, logs
    assert all(p.returncode == 0 for p in procs), logs
    assert "robot r2: packet refused" in (tmp_path / "decoder.log").read_text()
