"""`split-perception decode-bag`: a recorded bag of EncodedFeatures messages -> COCO-style detections.

A robot can log a few KB/frame of features instead of video and evaluate later, with no ROS
install: the message definition is read from msg/EncodedFeatures.msg and registered into a
`rosbags` typestore. Packets that do not decode (corrupt, another model's) are counted per error.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

from ..data.bags import BagError
from ..errors import ConfigError, ModelMismatchError, PacketError
from ..stamps import stamp_ns

MSGTYPE = "split_perception/msg/EncodedFeatures"
_REPO_MSG = Path(__file__).resolve().parents[2] / "msg" / "EncodedFeatures.msg"


def message_definition() -> str:
    """msg/EncodedFeatures.msg of this checkout, else of the installed package's share/ folder."""
    shares = [Path(p) / "share" / "split_perception" / "msg" / "EncodedFeatures.msg"
              for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for path in (_REPO_MSG, *shares):
        if path.is_file():
            return path.read_text()
    raise ConfigError(f"EncodedFeatures.msg not found (looked in {_REPO_MSG} and AMENT_PREFIX_PATH)")


def typestore():
    """The ROS 2 Jazzy typestore plus split_perception/msg/EncodedFeatures."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    ts.register(get_types_from_msg(message_definition(), MSGTYPE))
    return ts


def read_features(path: str | Path, topic: str | None = None) -> Iterator[tuple[str, object]]:
    """(topic, message) of every EncodedFeatures message, message None when it does not deserialize;
    the topic is auto-detected when there is one."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    count = 0
    try:
        with AnyReader([path], default_typestore=typestore()) as reader:
            conns = [c for c in reader.connections if c.msgtype == MSGTYPE and topic in (None, c.topic)]
            topics = sorted({c.topic for c in conns})
            if not topics:
                found = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
                raise BagError(f"{path}: no {MSGTYPE} topic{' ' + topic if topic else ''}; topics: {found}")
            if len(topics) > 1:
                raise BagError(f"{path}: {len(topics)} {MSGTYPE} topics, name one of them: {topics}")
            for conn, _, raw in reader.messages(connections=conns):
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                except Exception:  # noqa: BLE001 - one bad message: counted by the caller, the rest still read
                    msg = None
                yield conn.topic, msg
                count += 1
    except BagError:
        raise
    except Exception as exc:  # rosbags raises many types for damaged files
        raise BagError(f"{path}: unreadable after {count} messages ({type(exc).__name__}: {exc})") from None


def decode_bag(path: str | Path, model_path=None, topic: str | None = None, score_thresh: float | None = None,
               progress: bool = True) -> dict:
    """Every packet of the bag decoded: COCO-style detections, a per-frame list, refusals per error type."""
    from tqdm import tqdm

    from ..offboard.decoder import OffboardDecoder
    from .metrics import xywh

    dec = OffboardDecoder(model_path, score_thresh=score_thresh)
    detections, frames, refused, stopped, used = [], [], Counter(), None, None
    items = read_features(path, topic)
    first = next(items, None)  # a missing bag or topic fails here, before any progress bar
    bar = tqdm(desc=f"decode-bag {Path(path).name}", unit="msg", disable=not progress)
    try:
        for used, msg in itertools.chain([first] if first else [], items):
            bar.update()
            if msg is None:
                refused["unreadable message"] += 1
                continue
            stamp, header_frame = stamp_ns(msg.header.stamp), msg.header.frame_id
            try:
                frame = dec.decode(bytes(msg.packet), with_mask=False)
            except (PacketError, ModelMismatchError) as exc:
                refused[type(exc).__name__] += 1
                continue
            frames.append({"stamp_ns": stamp, "header_frame_id": header_frame, "frame_id": frame.frame_id,
                           "width": frame.width, "bytes": frame.num_bytes, "detections": len(frame.detections)})
            for d in frame.detections:
                detections.append({"stamp_ns": stamp, "header_frame_id": header_frame, "frame_id": frame.frame_id,
                                   "category_id": d.label_id, "label": d.label, "bbox": xywh(d.box),
                                   "score": d.score})
    except BagError as exc:
        if not frames and not refused:
            raise
        stopped = str(exc)
    finally:
        bar.close()
    return {"bag": str(path), "topic": used, "model_fingerprint": dec.fingerprint,
            "messages": len(frames) + sum(refused.values()), "decoded": len(frames), "refused": dict(refused),
            "stopped": stopped, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(dec.cfg.class_names)],
            "frames": frames, "detections": detections}


def run(args) -> int:
    """The `decode-bag` command: decode, write the JSON, print one summary line per fact."""
    import torch

    torch.set_num_threads(args.threads)
    res = decode_bag(args.bag, args.model, args.topic, args.score_thresh)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    by_width = Counter(f["width"] for f in res["frames"])
    mean = sum(f["bytes"] for f in res["frames"]) / max(1, len(res["frames"]))
    refused = ", ".join(f"{n} {e}" for e, n in res["refused"].items()) or "none"
    print(f"{res['bag']} ({res['topic']}): {res['messages']} messages, {res['decoded']} decoded "
          f"({mean:.0f} bytes/frame mean; frames per width {dict(sorted(by_width.items()))}), refused: {refused}")
    if res["stopped"]:
        print(f"the bag is damaged, stopped: {res['stopped']}")
    print(f"wrote {len(res['detections'])} detections and {len(res['frames'])} frames to {out.resolve()}")
    return 0
