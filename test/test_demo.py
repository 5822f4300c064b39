"""The README's demo command, shortened: the whole ROS loop over DDS on the bundled model."""

import json
import os
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path, bundled_model_path):
    proc = subprocess.run([sys.executable, "-m", "split_perception.cli", "demo", "--seconds", "24", "--frames", "10",
                           "--trace", "steps:3e6@0,0.12e6@8,3e6@15", "--out", str(tmp_path),
                           "--domain-id", str(1 + (os.getpid() + 50) % 100)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "link Mbit/s" in proc.stdout and "per width (delivered frames)" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["all"]["frames"] > 20, proc.stdout
    assert summary["all"]["map50"] > 0.3, proc.stdout  # real detections against the bag's ground truth
    assert len(summary) >= 3, proc.stdout  # the monitor used at least two widths
    assert (tmp_path / "bandwidth_width.png").stat().st_size > 0
    assert list((tmp_path / "annotated").glob("*.png"))
