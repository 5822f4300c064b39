"""How many servers a fleet needs, on paper, from the decode cost `bench batch` measured.

One server decodes S = 1000 / (ms per frame) frames per second when decoding is all it does, at the
batch size its robots fill (a batch holds at most one frame per robot). A fleet of N robots at F
fps needs ceil(N x F / (u x S)) servers to carry its frames at a planned share u of each (room for
bursts and the bridge), plus one so that any one server may die and its robots fit on the others.
`bench report` puts the worked table into docs/results.md, so the figures are the measured ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..evaluation.report import markdown_table

SHARE = 0.7  # the share of a server's decode rate to plan on
SPARE = 1  # servers beyond the load: any one may die
FLEETS = [(4, 2), (4, 5), (16, 5), (16, 10), (64, 5), (64, 10), (256, 5)]  # (robots, fps each) worked out
COLUMNS = [("robots", "robots", "d"), ("fps", "fps each", "g"), ("frames_s", "frames/s", "g"),
           ("batch", "batch size", "d"), ("server_fps", "one server frames/s", ".0f"),
           ("for_load", "servers for the load", "d"), ("servers", "servers (+1 spare)", "d")]


def servers_needed(robots: int, fps: float, ms_per_frame: dict[int, float], share: float = SHARE) -> dict:
    """Servers for the load of `robots` at `fps`, with the batch size each server's robots fill and the
    frames/s one server decodes at it; the batch shrinks as servers are added, so settle on both."""
    load, k = robots * fps, 1
    while True:
        per_server = math.ceil(robots / k)
        batch = max((b for b in ms_per_frame if b <= per_server), default=min(ms_per_frame))
        server_fps = 1000.0 / ms_per_frame[batch]
        need = max(1, math.ceil(load / (share * server_fps)))
        if need <= k:
            return {"robots": robots, "fps": fps, "frames_s": load, "batch": batch, "server_fps": server_fps,
                    "for_load": k, "servers": k + SPARE}
        k = need


def section(results: Path) -> str:
    """The worked table from `results`/batch/batch.json (median ms per frame); '' without it."""
    path = results / "batch" / "batch.json"
    if not path.is_file():
        return ""
    batch = json.loads(path.read_text())
    ms = {r["batch"]: r["ms_per_frame_median"] for r in batch["rows"]}
    rows = [servers_needed(n, f, ms) for n, f in FLEETS]
    return (f"From `{batch['command']}` ({batch['machine'].get('date')}; the median ms per frame, for the model it "
            f"ran): one server decodes S = 1000 / (ms per frame) frames/s at the batch size its robots fill; a fleet "
            f"of N robots at F fps needs ceil(N x F / ({SHARE:g} x S)) servers for the load, plus {SPARE} so that "
            f"any one may die. On paper: the bridge, the network and other work on the server come out of the "
            f"{1 - SHARE:.0%} left.\n\n{markdown_table(rows, COLUMNS)}\n")
