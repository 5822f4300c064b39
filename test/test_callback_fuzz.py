"""Runs test/ros_inprocess/decoder_callback_fuzz.py (hypothesis on the decoder node's callbacks)
in a child pytest with the ROS environment, which the messages need and this process lacks."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from split_perception.harness.domains import pick_domain
from split_perception.harness.processes import ros_env

HERE = Path(__file__).parent
CHILD = HERE / "ros_inprocess" / "decoder_callback_fuzz.py"
CHILD_TESTS = {"test_any_message_is_decoded_or_refused_and_counted",
               "test_real_packets_decoded_and_corrupt_ones_refused"}


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test name -> 'passed', 'failed', 'error' or 'skipped', from a pytest JUnit XML report."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        bad = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        out[case.get("name")] = {"failure": "failed"}.get(bad[0], bad[0]) if bad else "passed"
    return out


@pytest.mark.parametrize("cases", [pytest.param(1500, id="1500"),
                                   pytest.param(10_000, id="10000", marks=pytest.mark.slow)])
def test_decoder_node_callbacks_under_hypothesis(tiny_model_path, tmp_path, cases):
    env = {**ros_env(pick_domain()), "SPLIT_PERCEPTION_FUZZ_MODEL": str(tiny_model_path),
           "SPLIT_PERCEPTION_FUZZ_CASES": str(cases)}
    report = tmp_path / "junit.xml"
    # importlib mode, run from elsewhere: `split_perception` must come from the install space (with msg/)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                        f"--junitxml={report}", str(CHILD)],
                       env=env, capture_output=True, text=True, timeout=900 + cases // 10, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert junit_outcomes(report) == dict.fromkeys(CHILD_TESTS, "passed"), r.stdout[-2000:]
