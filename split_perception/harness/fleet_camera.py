"""Driver process for `bench fleet`: the cameras of N robots in one process, and what comes back.

For each robot `r` of `cfg["robots"]` it publishes rgb8 frames on `/<r>/image` at `cfg["fps"]`
(robots' frames staggered over the period, as independent cameras would be) and records every
`/<r>/detections` with its arrival time and latency. One process instead of N keeps the driver's
own load small beside the nodes it measures. It stops after `cfg["seconds"]`, or earlier on SIGINT
or SIGTERM (a run whose length the caller decides). Writes JSON; run with processes.ros_env (own domain).

Usage: python -m split_perception.harness.fleet_camera CONFIG.json OUT.json
"""

import json
import signal
import sys
import threading
import time

import numpy as np
import rclpy
from PIL import Image as PILImage
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from split_perception.msg import Detection2DArray
from split_perception.ros.image_conversion import rgb_to_image
from split_perception.stamps import split_ns, stamp_ns


def main() -> int:
    cfg = json.loads(open(sys.argv[1]).read())
    frames = [np.asarray(PILImage.open(p).convert("RGB")) for p in cfg["images"]]
    robots, fps, seconds = cfg["robots"], float(cfg["fps"]), float(cfg["seconds"])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("fleet_camera")
    t0 = time.monotonic()
    rec = {r: {"sent": [], "detections": []} for r in robots}

    def on_detections(robot: str, m: Detection2DArray) -> None:
        rec[robot]["detections"].append({"t": time.monotonic() - t0, "stamp": stamp_ns(m.header.stamp),
                                         "latency_ms": (time.time_ns() - stamp_ns(m.header.stamp)) / 1e6})

    pubs = {}
    for r in robots:
        node.create_subscription(Detection2DArray, f"/{r}/detections", lambda m, r=r: on_detections(r, m), 50)
        pubs[r] = node.create_publisher(Image, f"/{r}/image", qos_profile_sensor_data)
    # each robot's first frame is offset by k / (N * fps): the fleet's frames do not arrive in bursts
    due = {r: k / (len(robots) * fps) for k, r in enumerate(robots)}
    count = {r: 0 for r in robots}
    while (now := time.monotonic() - t0) < seconds and not stop.is_set():
        for r in robots:
            if now >= due[r]:
                header = Header(frame_id=f"{r}/camera")
                header.stamp.sec, header.stamp.nanosec = split_ns(time.time_ns())
                m = rgb_to_image(frames[count[r] % len(frames)], header)
                pubs[r].publish(m)
                rec[r]["sent"].append({"t": now, "stamp": stamp_ns(m.header.stamp)})
                count[r] += 1
                due[r] += 1.0 / fps
        rclpy.spin_once(node, timeout_sec=0.005)
    json.dump(rec, open(sys.argv[2], "w"))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
