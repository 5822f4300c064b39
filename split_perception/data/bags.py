"""rosbag2 files (mcap or sqlite3) read and written with `rosbags`: no ROS install needed.

`write_image_bag` writes any frames (a real clip, see data/footage.py) as a camera bag;
`write_sample_bag` renders synthetic frames into one with COCO ground truth beside it (image id
= frame index + 1, matched through the header stamp); `read_images` yields camera messages and
raises BagError naming the file and position when a bag is broken.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..config import DEFAULT_CLASSES
from ..errors import SplitPerceptionError
from ..stamps import split_ns
from .synthetic import render_scene

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class BagError(SplitPerceptionError):
    """A bag that is missing, has no camera topic, or is truncated/corrupt."""


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def ground_truth_path(bag: str | Path) -> Path:
    bag = Path(bag)
    return bag.parent / f"{bag.name}.ground_truth.json"


T0_NS = 1_700_000_000_000_000_000  # header stamp and recording time of a written bag's first frame


def frame_stamp_ns(index: int, fps: float) -> int:
    """Header stamp of frame `index` of a bag written at `fps`."""
    return T0_NS + int(index * 1e9 / fps)


def write_image_bag(path: str | Path, frames: Iterable[np.ndarray], fps: float = 10.0, storage: str = "mcap",
                    topic: str = "/camera/image_raw", image_format: str = "rgb8") -> int:
    """RGB uint8 frames into a new rosbag2 folder, one message every 1/`fps` s (header stamp =
    recording time = `frame_stamp_ns`), as rgb8 `Image` on `topic` or as `CompressedImage`
    (`image_format` "jpeg" q95 or "png") on `topic`/compressed. Returns the number of frames.

    The first frame is taken before the folder is created, so a source that fails at once leaves
    nothing behind."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from .image_codecs import encode_image

    path = Path(path)
    if path.exists():
        raise BagError(f"{path} exists; rosbag2 writes a new folder")
    if storage not in ("mcap", "sqlite3"):
        raise BagError(f"storage must be mcap or sqlite3, got {storage!r}")
    if image_format not in ("rgb8", "jpeg", "png"):
        raise BagError(f"image_format must be rgb8, jpeg or png, got {image_format!r}")
    if not fps > 0:
        raise BagError(f"fps must be > 0, got {fps}")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise BagError(f"no frames to write to {path}")
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    ts = _typestore()
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    msgtype = Image.__msgtype__ if image_format == "rgb8" else Compressed.__msgtype__
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    count = 0
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic if image_format == "rgb8" else f"{topic}/compressed", msgtype,
                                     typestore=ts)
        for rgb in itertools.chain([first], frames):
            stamp = frame_stamp_ns(count, fps)
            header = Header(stamp=Time(*split_ns(stamp)), frame_id="camera")
            if image_format == "rgb8":
                h, w = rgb.shape[:2]
                msg = Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                            data=np.ascontiguousarray(rgb).reshape(-1))
            else:
                msg = Compressed(header=header, format=image_format,
                                 data=np.frombuffer(encode_image(rgb, image_format, 95 if image_format == "jpeg" else 3),
                                                    np.uint8))
            writer.write(conn, stamp, ts.serialize_cdr(msg, msgtype))
            count += 1
    return count


def write_sample_bag(path: str | Path, frames: int = 60, seed: int = 7, size=(480, 640), fps: float = 10.0,
                     storage: str = "mcap", topic: str = "/camera/image_raw",
                     class_names=DEFAULT_CLASSES, image_format: str = "rgb8") -> Path:
    """Synthetic frames at `fps` into a rosbag2 folder, as rgb8 `Image` or as `CompressedImage`
    (`image_format` "jpeg" or "png", on `topic`/compressed); COCO ground truth written beside it."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    images, annotations = [], []

    def scenes():
        for i in range(frames):
            rgb, objects = render_scene(rng, tuple(size), tuple(class_names))
            images.append({"id": i + 1, "file_name": f"frame{i:06d}", "height": size[0], "width": size[1],
                           "stamp_ns": frame_stamp_ns(i, fps)})
            for obj in objects:
                rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
                x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
                rle["counts"] = rle["counts"].decode("ascii")
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": obj.label,
                                    "bbox": [x, y, w, h], "area": float(mask_utils.area(rle)),
                                    "segmentation": rle, "iscrowd": 0})
            yield rgb

    path = Path(path)
    write_image_bag(path, scenes(), fps=fps, storage=storage, topic=topic, image_format=image_format)
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(class_names)]
    ground_truth_path(path).write_text(json.dumps({"images": images, "annotations": annotations,
                                                   "categories": categories}))
    return path


@dataclass
class BagImage:
    topic: str
    timestamp_ns: int  # recording time
    msgtype: str
    msg: object  # rosbags message (same fields as the ROS message)


def read_images(path: str | Path, topic: str | None = None, first_topic: bool = True) -> Iterator[BagImage]:
    """Yield Image/CompressedImage messages in recording order (first camera topic if none given;
    with `first_topic=False` a bag of several camera topics raises BagError listing them).

    A damaged mcap bag that rosbags cannot index is scanned from the start instead, so the frames
    before the damage still come out; the BagError at the end names the file and byte offset."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    count = 0
    try:
        with AnyReader([path], default_typestore=_typestore()) as reader:
            conns = [c for c in reader.connections if c.msgtype in IMAGE_TYPES and (topic is None or c.topic == topic)]
            if not conns:
                found = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
                raise BagError(f"{path}: no image topic{' ' + topic if topic else ''}; topics: {found}")
            topics = sorted({c.topic for c in conns})
            if len(topics) > 1 and not first_topic:
                raise BagError(f"{path}: {len(topics)} camera topics, name one of them: {topics}")
            conns = [c for c in conns if c.topic == conns[0].topic]
            for conn, ts, raw in reader.messages(connections=conns):
                yield BagImage(conn.topic, ts, conn.msgtype, reader.deserialize(raw, conn.msgtype))
                count += 1
    except BagError:
        raise
    except Exception as exc:  # rosbags raises many types for damaged files
        files = _mcap_files(path)
        if count or not files:
            raise BagError(f"{path}: unreadable after {count} messages ({type(exc).__name__}: {exc})") from None
        yield from _salvage(files, topic)


def _mcap_files(path: Path) -> list[Path]:
    return [path] if path.suffix == ".mcap" else sorted(path.glob("*.mcap")) if path.is_dir() else []


def _salvage(files: list[Path], topic: str | None) -> Iterator[BagImage]:
    """Camera messages of damaged mcap files in file order, then BagError at the first damage."""
    from .mcap_salvage import McapDamage, salvage_messages

    ts, count = _typestore(), 0
    for f in files:
        try:
            for m in salvage_messages(f):
                if m.msgtype in IMAGE_TYPES and (topic or m.topic) == m.topic:
                    topic = m.topic
                    yield BagImage(m.topic, m.log_time_ns, m.msgtype, ts.deserialize_cdr(m.data, m.msgtype))
                    count += 1
        except McapDamage as exc:
            raise BagError(f"{f}: {exc}; {count} camera messages before it were read") from None
    if not count:
        raise BagError(f"{files[0].parent}: no image topic{' ' + topic if topic else ''}")
