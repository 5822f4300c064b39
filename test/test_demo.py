"""The README's demo command as a newcomer runs it: the installed `split-perception demo`, default
output folder (relative), from a copy of the repository as the working directory."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from split_perception.harness.domains import pick_domain

REPO = Path(__file__).resolve().parents[1]
AGREEMENT_FLOOR = 0.0  # above it: delivered detections were matched to their frames and some agree


def repo_copy(dest: Path) -> Path:
    """The tracked files of the repository (what a fresh clone holds), without the built venv."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def test_demo_with_default_output_folder_from_a_repository_copy(tmp_path, bundled_model_path):
    """`make demo`'s command with the default model: the held-out street clip, scored against the teacher;
    what arrives carries COCO classes."""
    from split_perception.demo import DEMO_CLIP
    from split_perception.models.checkpoint import read_checkpoint

    assert DEMO_CLIP.is_file(), f"{DEMO_CLIP} missing: run `make footage-heldout` (part of `make test`)"
    cli = Path(sys.executable).parent / "split-perception"  # what `make demo` runs
    assert cli.is_file(), f"{cli} missing: the package is not installed in this venv"
    work = repo_copy(tmp_path / "clone")
    proc = subprocess.run([str(cli), "demo", "--seconds", "24", "--frames", "10",
                           "--trace", "steps:3e6@0,0.05e6@8,3e6@15", "--domain-id", str(pick_domain())],
                          cwd=work, capture_output=True, text=True, timeout=600)
    out = work / "out" / "demo"  # the default, relative to where the user stands
    logs = {p.name: p.read_text() for p in (out / "logs").glob("*.log")}
    everything = proc.stdout + proc.stderr + "".join(logs.values())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Traceback" not in everything, everything[-6000:]
    assert set(logs) >= {"encoder.log", "decoder.log", "link_monitor.log", "link_emulator.log", "bag_player.log"}
    assert "link Mbit/s" in proc.stdout and "mAP against the teacher on the uncompressed frames" in proc.stdout
    assert (out / "vtest_bag").is_dir(), proc.stdout  # the held-out clip, not synthetic frames
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all"]["reference"] == "teacher"
    assert summary["all"]["frames"] > 20, proc.stdout  # frames were delivered ...
    assert summary["all"]["images"] >= 5 and summary["all"]["map50"] > AGREEMENT_FLOOR, proc.stdout  # ... scored
    detected = next(line for line in proc.stdout.splitlines() if line.startswith("detected: "))
    classes = set(read_checkpoint(bundled_model_path)["model_config"].class_names)  # COCO's
    assert summary["all"]["labels"] and set(summary["all"]["labels"]) <= classes, detected
    assert len(summary) >= 3, proc.stdout  # the monitor used at least two widths
    # every width with a few delivered frames was also decoded (the camera waits for the decoder)
    assert all(s["latency_ms_p50"] is not None for k, s in summary.items() if k != "all" and s["frames"] >= 5), \
        proc.stdout
    assert (out / "bandwidth_width.png").stat().st_size > 0
    assert list((out / "annotated").glob("*.png"))


def test_demo_of_the_synthetic_model_as_in_the_readme(tmp_path):
    """The README's demo line for `--model synthetic`: synthetic frames, scored against their ground truth."""
    from .test_user_commands import readme_line, run

    res = run(tmp_path, readme_line(" demo --model synthetic"))
    assert "mAP against the ground truth" in res.stdout, res.stdout[-3000:]
    summary = json.loads((tmp_path / "out" / "demo" / "summary.json").read_text())
    assert summary["all"]["reference"] == "ground truth" and (tmp_path / "out" / "demo" / "sample_bag").is_dir()
    assert summary["all"]["images"] >= 5 and summary["all"]["frames"] > 20, res.stdout[-3000:]
    assert summary["all"]["map50"] > 0.3, res.stdout[-3000:]
    assert list((tmp_path / "out" / "demo" / "annotated").glob("*.png"))


def test_demo_without_the_footage_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    """No held-out clip (footage not fetched): one error line naming `make footage`, exit 2, nothing started."""
    from split_perception import demo
    from split_perception.cli import main

    monkeypatch.setattr(demo, "DEMO_CLIP", tmp_path / "no_footage" / "vtest.avi")
    assert main(["demo", "--out", str(tmp_path / "out")]) == 2
    assert "run `make footage`" in capsys.readouterr().err and not (tmp_path / "out" / "logs").exists()
