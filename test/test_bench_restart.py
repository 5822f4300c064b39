"""`bench restart`: the summary of kill-and-restart runs, argument checks, and one short real run."""

from __future__ import annotations

import json

import pytest

from split_perception.bench.restart import summarize
from split_perception.cli import main
from split_perception.harness.domains import pick_domain


def row(victim="decoder", load=0, resume=0.1, alive=True, discovery="Fast DDS default", runtime="onnx", **extra):
    return {"victim": victim, "encoder_runtime": runtime, "cpu_load": load, "discovery": discovery, "ready_after_launch_s": 4.0,
            "resume_after_ready_s": resume, "resume_after_launch_s": None if resume is None else 4.0 + resume,
            "other_alive": alive, **extra}


def test_summary_per_victim_and_load_counts_runs_that_never_resumed():
    rows = [row(resume=0.1, outage_publish_fps=5.0, outage_max_latency_ms=40.0),
            row(resume=2.0, outage_publish_fps=4.0, outage_max_latency_ms=90.0),
            row(resume=None, outage_publish_fps=5.0, outage_max_latency_ms=30.0),
            row(load=2, resume=0.5, outage_publish_fps=5.0, outage_max_latency_ms=50.0),
            row(resume=0.4, discovery="fastdds_rediscovery.xml", outage_publish_fps=5.0, outage_max_latency_ms=9.0),
            row(victim="encoder", resume=0.3, alive=False)]
    quiet, loaded, profiled, enc = summarize(rows, within_s=1.0)
    assert (quiet["runs"], quiet["resumed"], quiet["within"]) == (3, 2, "1/3")
    assert quiet["resume_median_s"] == pytest.approx(1.05) and quiet["resume_max_s"] == 2.0
    assert quiet["outage_publish_fps"] == 4.0 and quiet["outage_max_latency_ms"] == 90.0  # the worst run
    assert (loaded["cpu_load"], loaded["within"]) == (2, "1/1")
    assert (profiled["discovery"], profiled["runs"], profiled["resume_max_s"]) == ("fastdds_rediscovery.xml", 1, 0.4)
    assert enc["outage_publish_fps"] is None and not enc["other_alive"]
    assert (enc["encoder_runtime"], enc["runs"]) == ("onnx", 1)


@pytest.mark.parametrize("args, message", [(["--victims", "camera"], "victims"),
                                           (["--cpu-load", "two"], "cpu-load"),
                                           (["--seconds", "10"], "seconds"),
                                           (["--dds-profile", "nope.xml"], "no such file")])
def test_bad_arguments_are_clear_errors(tmp_path, capsys, args, message):
    assert main(["bench", "restart", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_restart_short_run_over_dds(tmp_path, tiny_model_path):
    """A decoder kill-and-restart with Fast DDS defaults and with the shipped rediscovery profile:
    decoding resumes and the encoder keeps going."""
    out = tmp_path / "restart"
    rc = main(["bench", "restart", "--runs", "1", "--victims", "decoder", "--cpu-load", "0", "--seconds", "22",
               "--model", str(tiny_model_path), "--out", str(out), "--domain-id", str(pick_domain())])
    res = json.loads((out / "restart.json").read_text())
    assert rc == 0, res
    assert [r["discovery"] for r in res["rows"]] == ["Fast DDS default", "fastdds_rediscovery.xml"]
    assert {r["encoder_runtime"] for r in res["rows"]} == {"torch"}  # the tiny model has no onboard export
    for r in res["rows"]:
        assert r["resume_after_ready_s"] is not None and r["resume_after_launch_s"] > r["ready_after_launch_s"]
        assert r["outage_publish_fps"] > 3.5 and r["other_alive"]  # camera at 5 fps: the encoder did not stall
    assert "ready -> first detection" in (out / "table.md").read_text()
