"""Driver process for tests and benchmarks: publishes camera frames / raw EncodedFeatures, calls
the encoder's parameter service, records what the nodes publish (with arrival times and
latencies), and writes it as JSON. Run with processes.ros_env (own domain id).

Usage: python -m split_perception.harness.probe CONFIG.json OUT.json
"""

import json
import os
import sys
import time

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64

from split_perception.data.image_codecs import encode_image
from split_perception.data.synthetic import render_scene
from split_perception.msg import Detection2DArray, EncodedFeatures, FrameAck, LinkStatus
from split_perception.ros.common import qos_from
from split_perception.stamps import split_ns, stamp_ns


def load_frames(cfg: dict) -> list[np.ndarray]:
    """`cfg["images"]`: image files played in order (RGB); otherwise 8 synthetic scenes of `size`."""
    if cfg.get("images"):
        return [cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in cfg["images"]]
    rng = np.random.default_rng(cfg.get("seed", 0))
    h, w = cfg.get("size", [240, 320])
    return [render_scene(rng, (h, w))[0] for _ in range(8)]


def main() -> int:
    cfg = json.loads(open(sys.argv[1]).read())
    rclpy.init()
    node = rclpy.create_node("probe", namespace=cfg.get("namespace", ""))  # a robot's namespace in a fleet
    rec = {"detections": [], "features": [], "link_status": [], "bandwidth": [], "set_results": [], "sent": [],
           "images": [], "diagnostics": []}
    t0 = time.monotonic()
    now = lambda: time.monotonic() - t0  # noqa: E731
    age_ms = lambda stamp: (time.time_ns() - stamp_ns(stamp)) / 1e6  # noqa: E731
    node.create_subscription(Detection2DArray, "detections", lambda m: rec["detections"].append(
        {"t": now(), "stamp": stamp_ns(m.header.stamp), "n": len(m.detections),
         "latency_ms": age_ms(m.header.stamp),
         "boxes": [[d.class_id, d.score, d.center_x - d.size_x / 2, d.center_y - d.size_y / 2, d.size_x, d.size_y]
                   for d in m.detections] if cfg.get("record_boxes") else None}), 50)
    if cfg.get("features_topic", "features"):  # "" = none (a reader across a link would double its load)
        node.create_subscription(EncodedFeatures, cfg.get("features_topic", "features"), lambda m: rec["features"].append(
            {"t": now(), "width": round(m.width, 3), "bytes": len(m.packet), "frame_id": m.frame_id,
             "stamp": stamp_ns(m.header.stamp),
             "encode_ms": m.encode_ms, "latency_ms": age_ms(m.header.stamp),
             "packet": bytes(m.packet).hex() if cfg.get("record_packets") else None}), qos_from("best_effort", 50))
    node.create_subscription(LinkStatus, "link_status", lambda m: rec["link_status"].append(
        {"t": now(), "bad": m.bad_packets, "fps": m.fps, "width": m.width, "loss": m.loss_rate,
         "received": m.frames_received, "throughput_bps": m.throughput_bps, "latency_ms": m.latency_ms,
         "bytes_per_frame": m.bytes_per_frame}), 10)
    if cfg.get("record_acks"):  # the decoder's FrameAcks to the encoder
        rec["acks"] = []
        node.create_subscription(FrameAck, "features_ack", lambda m: rec["acks"].append(
            {"t": now(), "stream_id": m.stream_id, "frame_id": m.frame_id, "width_index": m.width_index,
             "held": m.held}), qos_from("best_effort", 50))
    node.create_subscription(Float64, "link_bandwidth", lambda m: rec["bandwidth"].append({"t": now(), "bps": m.data}), 10)
    if cfg.get("record_diagnostics"):
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: rec["diagnostics"].extend(
            {"t": now(), "name": s.name, "level": s.level[0], "message": s.message, "hardware_id": s.hardware_id,
             "values": {kv.key: kv.value for kv in s.values}} for s in m.status), 50)
    # before the image listener exists (a bag player waits for it), the publishers named here must
    # be matched, so that nothing they publish for the first frames is missed (60 s at most)
    awaited = cfg.get("await_publishers", [])
    deadline = time.monotonic() + 60.0
    while awaited and time.monotonic() < deadline and any(node.count_publishers(t) < 1 for t in awaited):
        rclpy.spin_once(node, timeout_sec=0.1)
    arrival = lambda m: {"t": now(), "stamp": stamp_ns(m.header.stamp),  # noqa: E731
                         "bytes": len(m.data), "latency_ms": age_ms(m.header.stamp)}
    if cfg.get("listen_images"):  # counts as an image subscriber, so a bag player can wait for the probe
        node.create_subscription(Image, "image", lambda m: rec["images"].append(arrival(m)), qos_profile_sensor_data)
    if cfg.get("listen_masks"):  # the decoder's `segmentation` output
        rec["masks"] = []
        node.create_subscription(Image, "segmentation", lambda m: rec["masks"].append(arrival(m)), 10)
    if cfg.get("listen_compressed"):
        node.create_subscription(CompressedImage, "image/compressed", lambda m: rec["images"].append(arrival(m)),
                                 qos_profile_sensor_data)
    img_pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    jpeg_pub = node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
    raw_pub = node.create_publisher(EncodedFeatures, "features", qos_from("best_effort"))
    encoder_params = AsyncParameterClient(node, "encoder")
    frames = load_frames(cfg)
    publish = cfg.get("publish", "raw")  # raw Image, "jpeg" CompressedImage, or "none"
    jpegs = [encode_image(f, "jpeg", cfg.get("jpeg_quality", 95)) for f in frames] if publish == "jpeg" else None
    fps, seconds = cfg.get("fps", 5.0), cfg["seconds"]
    pauses = cfg.get("pause", [])  # [start, end] windows without images; garbage and recording go on
    calls = sorted(cfg.get("set_width", []), key=lambda c: c["at"])
    garbage = cfg.get("garbage", [])
    next_frame, i = 0.0, 0
    pending = []
    progress_s, next_progress, shown = cfg.get("progress_s", 0), cfg.get("progress_s", 0), 0
    stop_file = cfg.get("stop_file")  # ends the run early when this file appears
    while now() < seconds and not (stop_file and os.path.exists(stop_file)):
        if progress_s and now() >= next_progress:  # one line per interval: what arrived since the last
            new = rec["detections"][shown:]
            lat = sorted(d["latency_ms"] for d in new)
            print(f"probe t={now():.0f}s: sent {len(rec['sent'])}, delivered {len(new) / progress_s:.1f} fps, "
                  f"latency p50 {lat[len(lat) // 2] if lat else float('nan'):.0f} ms", flush=True)
            shown, next_progress = len(rec["detections"]), next_progress + progress_s
        if next_frame <= now() and any(a <= now() < b for a, b in pauses):
            next_frame += 1.0 / fps
        elif publish != "none" and next_frame <= now():
            k = i % len(frames)
            m = CompressedImage() if jpegs else Image()
            m.header.stamp.sec, m.header.stamp.nanosec = split_ns(time.time_ns())
            m.header.frame_id = "cam"
            if jpegs:
                m.format, m.data = "jpeg", jpegs[k]
                jpeg_pub.publish(m)
            else:
                h, w = frames[k].shape[:2]
                m.height, m.width, m.encoding, m.step = h, w, "rgb8", w * 3
                m.data = frames[k].tobytes()
                img_pub.publish(m)
            rec["sent"].append({"t": now(), "stamp": stamp_ns(m.header.stamp), "frame": k,
                                "bytes": len(m.data)})
            i += 1
            next_frame += 1.0 / fps
        while (calls and now() >= calls[0]["at"] and len(rec["features"]) >= calls[0].get("after_features", 0)
               and encoder_params.services_are_ready()):
            c = calls.pop(0)
            c["t_call"] = now()
            fut = encoder_params.set_parameters([Parameter("width", Parameter.Type.DOUBLE, float(c["width"]))])
            pending.append((c, fut))
        while garbage and now() >= garbage[0]["at"]:
            g = garbage.pop(0)
            m = EncodedFeatures()
            m.frame_id = g.get("frame_id", 1)
            m.packet = bytes.fromhex(g["hex"])
            raw_pub.publish(m)
        for c, fut in list(pending):
            if fut.done():
                r = fut.result().results[0]
                rec["set_results"].append({"t": now(), "t_call": c["t_call"], "width": c["width"],
                                           "ok": r.successful, "reason": r.reason})
                pending.remove((c, fut))
        rclpy.spin_once(node, timeout_sec=0.01)
    json.dump(rec, open(sys.argv[2], "w"))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
