"""Demo recorder process: listens to the loop's topics and prints one table row per second
(bandwidth, width, KB/frame, fps, end-to-end latency, detections); writes everything as JSON.

Usage (started by `split-perception demo`): python -m split_perception.harness.demo_recorder SECONDS OUT.json
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from std_msgs.msg import Float64

from ..msg import Detection2DArray, EncodedFeatures
from ..ros.common import qos_from
from ..stamps import stamp_ns

HEADER = f"{'t[s]':>5} {'link Mbit/s':>11} {'width':>5} {'KB/frame':>8} {'fps':>5} {'latency ms':>10} {'dets/frame':>10}"


def main() -> int:
    seconds, out_path = float(sys.argv[1]), sys.argv[2]
    rclpy.init()
    node = rclpy.create_node("demo_recorder")
    frames, dets, bandwidth = [], [], []
    t0 = time.monotonic()

    def on_features(m: EncodedFeatures) -> None:
        frames.append({"t": time.monotonic() - t0, "width": round(m.width, 3), "bytes": len(m.packet),
                       "frame_id": m.frame_id, "stamp_ns": stamp_ns(m.header.stamp)})

    def on_dets(m: Detection2DArray) -> None:
        ns = stamp_ns(m.header.stamp)
        dets.append({"t": time.monotonic() - t0, "stamp_ns": ns, "latency_ms": (time.time_ns() - ns) / 1e6,
                     "detections": [{"class_id": d.class_id, "label": d.id, "score": d.score,
                                     "bbox": [d.center_x - d.size_x / 2, d.center_y - d.size_y / 2, d.size_x, d.size_y]}
                                    for d in m.detections]})

    node.create_subscription(EncodedFeatures, "features", on_features, qos_from("best_effort", 50))
    node.create_subscription(Detection2DArray, "detections", on_dets, 50)
    node.create_subscription(Float64, "link_bandwidth", lambda m: bandwidth.append(
        {"t": time.monotonic() - t0, "bps": m.data}), 10)
    print(HEADER, flush=True)
    next_row = 1.0
    while time.monotonic() - t0 < seconds:
        rclpy.spin_once(node, timeout_sec=0.05)
        now = time.monotonic() - t0
        if now >= next_row:
            f = [x for x in frames if next_row - 1 <= x["t"] < next_row]
            d = [x for x in dets if next_row - 1 <= x["t"] < next_row]
            bw = bandwidth[-1]["bps"] / 1e6 if bandwidth else float("nan")
            width = f[-1]["width"] if f else float("nan")
            kb = sum(x["bytes"] for x in f) / len(f) / 1000 if f else 0.0
            lat = sum(x["latency_ms"] for x in d) / len(d) if d else float("nan")
            per = sum(len(x["detections"]) for x in d) / len(d) if d else 0.0
            print(f"{next_row:5.0f} {bw:11.2f} {width:5.2f} {kb:8.2f} {len(d):5d} {lat:10.0f} {per:10.1f}", flush=True)
            next_row += 1.0
    json.dump({"frames": frames, "detections": dets, "bandwidth": bandwidth}, open(out_path, "w"))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
