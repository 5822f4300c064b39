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


class Probe:
    """One run of the probe: its node, what it records (`rec`, written as JSON) and the scripted
    actions of `cfg` (frames at `fps`, pauses, width calls to the encoder, garbage packets)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.node = rclpy.create_node("probe", namespace=cfg.get("namespace", ""))  # a robot's namespace in a fleet
        self.rec = {"detections": [], "features": [], "link_status": [], "bandwidth": [], "set_results": [],
                    "sent": [], "images": [], "diagnostics": []}
        self.t0 = time.monotonic()
        self._listen()
        self._await_publishers(cfg.get("await_publishers", []))
        self._listen_images()
        self.img_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.jpeg_pub = self.node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
        self.raw_pub = self.node.create_publisher(EncodedFeatures, "features", qos_from("best_effort"))
        self.encoder_params = AsyncParameterClient(self.node, "encoder")
        self.frames = load_frames(cfg)
        self.publish = cfg.get("publish", "raw")  # raw Image, "jpeg" CompressedImage, or "none"
        self.jpegs = ([encode_image(f, "jpeg", cfg.get("jpeg_quality", 95)) for f in self.frames]
                      if self.publish == "jpeg" else None)
        self.calls = sorted(cfg.get("set_width", []), key=lambda c: c["at"])
        self.garbage = list(cfg.get("garbage", []))
        self.pending = []  # width calls awaiting their reply
        self.sent_frames = 0
        self.next_frame = 0.0
        self.progress_s = cfg.get("progress_s", 0)
        self.next_progress, self.shown = self.progress_s, 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    @staticmethod
    def age_ms(stamp) -> float:
        return (time.time_ns() - stamp_ns(stamp)) / 1e6

    def _arrival(self, m) -> dict:
        return {"t": self.now(), "stamp": stamp_ns(m.header.stamp), "bytes": len(m.data),
                "latency_ms": self.age_ms(m.header.stamp)}

    def _listen(self) -> None:
        """Subscriptions to the nodes' outputs, each appending one record per message."""
        cfg, rec, node = self.cfg, self.rec, self.node
        node.create_subscription(Detection2DArray, "detections", lambda m: rec["detections"].append(
            {"t": self.now(), "stamp": stamp_ns(m.header.stamp), "n": len(m.detections),
             "latency_ms": self.age_ms(m.header.stamp),
             "boxes": [[d.class_id, d.score, d.center_x - d.size_x / 2, d.center_y - d.size_y / 2, d.size_x,
                        d.size_y] for d in m.detections] if cfg.get("record_boxes") else None}), 50)
        features_topic = cfg.get("features_topic", "features")
        if features_topic:  # "" = none (a reader across a link would double its load)
            node.create_subscription(EncodedFeatures, features_topic, lambda m: rec["features"].append(
                {"t": self.now(), "width": round(m.width, 3), "bytes": len(m.packet), "frame_id": m.frame_id,
                 "stamp": stamp_ns(m.header.stamp), "encode_ms": m.encode_ms,
                 "latency_ms": self.age_ms(m.header.stamp),
                 "packet": bytes(m.packet).hex() if cfg.get("record_packets") else None}),
                qos_from("best_effort", 50))
        node.create_subscription(LinkStatus, "link_status", lambda m: rec["link_status"].append(
            {"t": self.now(), "bad": m.bad_packets, "fps": m.fps, "width": m.width, "loss": m.loss_rate,
             "received": m.frames_received, "throughput_bps": m.throughput_bps, "latency_ms": m.latency_ms,
             "bytes_per_frame": m.bytes_per_frame}), 10)
        if cfg.get("record_acks"):  # the decoder's FrameAcks to the encoder
            rec["acks"] = []
            node.create_subscription(FrameAck, "features_ack", lambda m: rec["acks"].append(
                {"t": self.now(), "stream_id": m.stream_id, "frame_id": m.frame_id, "width_index": m.width_index,
                 "held": m.held}), qos_from("best_effort", 50))
        node.create_subscription(Float64, "link_bandwidth",
                                 lambda m: rec["bandwidth"].append({"t": self.now(), "bps": m.data}), 10)
        if cfg.get("record_diagnostics"):
            node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: rec["diagnostics"].extend(
                {"t": self.now(), "name": s.name, "level": s.level[0], "message": s.message,
                 "hardware_id": s.hardware_id, "values": {kv.key: kv.value for kv in s.values}}
                for s in m.status), 50)

    def _await_publishers(self, topics: list[str]) -> None:
        """Before the image listener exists (a bag player waits for it), the publishers named here must
        be matched, so that nothing they publish for the first frames is missed (60 s at most)."""
        deadline = time.monotonic() + 60.0
        while topics and time.monotonic() < deadline and any(self.node.count_publishers(t) < 1 for t in topics):
            rclpy.spin_once(self.node, timeout_sec=0.1)

    def _listen_images(self) -> None:
        cfg, rec, node = self.cfg, self.rec, self.node
        if cfg.get("listen_images"):  # counts as an image subscriber, so a bag player can wait for the probe
            node.create_subscription(Image, "image", lambda m: rec["images"].append(self._arrival(m)),
                                     qos_profile_sensor_data)
        if cfg.get("listen_masks"):  # the decoder's `segmentation` output
            rec["masks"] = []
            node.create_subscription(Image, "segmentation", lambda m: rec["masks"].append(self._arrival(m)), 10)
        if cfg.get("listen_compressed"):
            node.create_subscription(CompressedImage, "image/compressed",
                                     lambda m: rec["images"].append(self._arrival(m)), qos_profile_sensor_data)

    def _report_progress(self) -> None:
        """One line per `progress_s`: what arrived since the last line."""
        if not self.progress_s or self.now() < self.next_progress:
            return
        new = self.rec["detections"][self.shown:]
        lat = sorted(d["latency_ms"] for d in new)
        print(f"probe t={self.now():.0f}s: sent {len(self.rec['sent'])}, delivered {len(new) / self.progress_s:.1f} "
              f"fps, latency p50 {lat[len(lat) // 2] if lat else float('nan'):.0f} ms", flush=True)
        self.shown, self.next_progress = len(self.rec["detections"]), self.next_progress + self.progress_s

    def _camera(self) -> None:
        """The next frame when it is due (skipped inside a `pause` window: [start, end] without images)."""
        if self.next_frame > self.now():
            return
        if any(a <= self.now() < b for a, b in self.cfg.get("pause", [])):
            self.next_frame += 1.0 / self.cfg.get("fps", 5.0)
            return
        if self.publish == "none":
            return
        k = self.sent_frames % len(self.frames)
        m = CompressedImage() if self.jpegs else Image()
        m.header.stamp.sec, m.header.stamp.nanosec = split_ns(time.time_ns())
        m.header.frame_id = "cam"
        if self.jpegs:
            m.format, m.data = "jpeg", self.jpegs[k]
            self.jpeg_pub.publish(m)
        else:
            h, w = self.frames[k].shape[:2]
            m.height, m.width, m.encoding, m.step = h, w, "rgb8", w * 3
            m.data = self.frames[k].tobytes()
            self.img_pub.publish(m)
        self.rec["sent"].append({"t": self.now(), "stamp": stamp_ns(m.header.stamp), "frame": k, "bytes": len(m.data)})
        self.sent_frames += 1
        self.next_frame += 1.0 / self.cfg.get("fps", 5.0)

    def _width_calls(self) -> None:
        """`set_width` calls to the encoder's parameter service when due, and their replies."""
        calls = self.calls
        while (calls and self.now() >= calls[0]["at"] and len(self.rec["features"]) >= calls[0].get("after_features", 0)
               and self.encoder_params.services_are_ready()):
            c = calls.pop(0)
            c["t_call"] = self.now()
            fut = self.encoder_params.set_parameters([Parameter("width", Parameter.Type.DOUBLE, float(c["width"]))])
            self.pending.append((c, fut))
        for c, fut in list(self.pending):
            if fut.done():
                r = fut.result().results[0]
                self.rec["set_results"].append({"t": self.now(), "t_call": c["t_call"], "width": c["width"],
                                                "ok": r.successful, "reason": r.reason})
                self.pending.remove((c, fut))

    def _garbage(self) -> None:
        """Raw `EncodedFeatures` (any bytes) on `features` when due."""
        while self.garbage and self.now() >= self.garbage[0]["at"]:
            g = self.garbage.pop(0)
            m = EncodedFeatures()
            m.frame_id = g.get("frame_id", 1)
            m.packet = bytes.fromhex(g["hex"])
            self.raw_pub.publish(m)

    def run(self) -> dict:
        """Until `seconds` pass or `stop_file` appears (which ends the run early)."""
        seconds, stop_file = self.cfg["seconds"], self.cfg.get("stop_file")
        while self.now() < seconds and not (stop_file and os.path.exists(stop_file)):
            self._report_progress()
            self._camera()
            self._width_calls()
            self._garbage()
            rclpy.spin_once(self.node, timeout_sec=0.01)
        return self.rec


def main() -> int:
    cfg = json.loads(open(sys.argv[1]).read())
    rclpy.init()
    probe = Probe(cfg)
    rec = probe.run()
    json.dump(rec, open(sys.argv[2], "w"))
    probe.node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
