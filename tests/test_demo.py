"""The README's demo command, shortened: runs end to end on the bundled model."""

import json
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path, bundled_model_path):
    proc = subprocess.run([sys.executable, "-m", "split_perception.cli", "demo", "--frames", "4", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "JPEG q75" in proc.stdout and "| split student | 0.25 |" in proc.stdout
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["results"]) == {"teacher", "0.25", "0.5", "0.75", "1.0"}
    assert len(list((tmp_path / "annotated").glob("*.png"))) == 8
