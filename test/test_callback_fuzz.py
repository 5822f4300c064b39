"""Runs test/ros_inprocess/decoder_callback_fuzz.py (hypothesis on the decoder node's callbacks)
in a child pytest with the ROS environment, which the messages need and this process lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from split_perception.harness.domains import pick_domain
from split_perception.harness.processes import ros_env

HERE = Path(__file__).parent


def test_decoder_node_callbacks_under_hypothesis(tiny_model_path, tmp_path):
    env = {**ros_env(pick_domain()), "SPLIT_PERCEPTION_FUZZ_MODEL": str(tiny_model_path),
           "SPLIT_PERCEPTION_FUZZ_CASES": "1500"}
    # importlib mode, run from elsewhere: `split_perception` must come from the install space (with msg/)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                        str(HERE / "ros_inprocess" / "decoder_callback_fuzz.py")],
                       env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout, r.stdout[-2000:]
