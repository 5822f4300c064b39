"""The `split-perception` command end to end on a tiny model and dataset (separate processes)."""

import json
import subprocess
import sys

import pytest

from split_perception.cli import build_parser


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "split_perception.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_every_command_has_help():
    parser = build_parser()
    for cmd in ("info", "make-dataset", "train", "encode", "decode", "eval", "demo"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([cmd, "--help"])
        assert exc.value.code == 0


def test_encode_decode_eval_info(tmp_path, tiny_model_path, tiny_data):
    images = sorted((tiny_data / "images").glob("*.png"))[:3]
    out = run("encode", *images, "--width", 0.5, "-o", tmp_path / "pk", "--model", tiny_model_path)
    assert "width 0.5" in out.stdout
    packets = sorted((tmp_path / "pk").glob("*.spf"))
    assert len(packets) == 3
    (tmp_path / "bad.spf").write_bytes(b"garbage")
    res = run("decode", *packets, tmp_path / "bad.spf", "-o", tmp_path / "r.json", "--model", tiny_model_path,
              "--masks", tmp_path / "masks", "--images", tiny_data / "images", "--annotated", tmp_path / "ann",
              "--score-thresh", 0.0, check=False)
    assert res.returncode == 1 and "1 packet(s) refused" in res.stdout and "truncated packet" in res.stderr
    dets = json.loads((tmp_path / "r.json").read_text())
    assert {d["file"] for d in dets} == {str(p) for p in packets}  # boxes of every good packet, none of the bad
    assert len(list((tmp_path / "masks").glob("*.png"))) == 3 and len(list((tmp_path / "ann").glob("*.png"))) == 3
    ev = run("eval", "--data", tiny_data, "--max-images", 4, "--model", tiny_model_path, "--out", tmp_path / "e.json")
    res = json.loads((tmp_path / "e.json").read_text())["results"]
    assert set(res) == {"teacher", "0.25", "0.5", "0.75", "1.0"} and "mAP" in ev.stdout
    info = run("info", "--model", tiny_model_path)
    assert "fingerprint" in info.stdout and "0.25" in info.stdout


def test_clear_errors(tmp_path, tiny_model_path):
    r = run("encode", tmp_path / "missing.png", "--model", tiny_model_path, check=False)
    assert r.returncode == 2 and "cannot read image" in r.stderr
    r = run("encode", tmp_path / "missing.png", "--width", 0.3, "--model", tiny_model_path, check=False)
    assert r.returncode == 2 and "not one of this model's widths" in r.stderr
    r = run("info", "--model", tmp_path / "nope.pt", check=False)
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
    (tmp_path / "c.yaml").write_text("train: {stage: student}\n")
    r = run("train", "--config", tmp_path / "c.yaml", check=False)
    assert r.returncode == 2 and "teacher_checkpoint" in r.stderr


def test_make_dataset(tmp_path):
    run("make-dataset", tmp_path / "d", "-n", 2, "--height", 64, "--width", 96)
    assert len(json.loads((tmp_path / "d/annotations.json").read_text())["images"]) == 2


def test_the_rerun_everything_script_calls_real_benchmarks_with_valid_options():
    import shlex
    from pathlib import Path

    from split_perception.cli import build_parser

    script = (Path(__file__).resolve().parents[1] / "scripts/bench_all.sh").read_text().replace("\\\n", " ")
    ra = shlex.split(next(l for l in script.splitlines() if l.startswith("ra="))[3:].strip('"'))
    calls = [shlex.split(l.replace("$ra", " ".join(ra)).rstrip("&")) for l in script.splitlines() if l.startswith("run ")]
    assert len(calls) >= 12
    parser = build_parser()
    for call in calls:
        args = parser.parse_args(["bench", *call[2:]])  # exits (fails the test) on an unknown option
        assert args.bench == call[2] and (call[2] == "report" or args.out == f"results/bench/{call[1]}"), call
