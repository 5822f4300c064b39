"""The commands README.md and docs/cli.md show, run as a new user runs them: the bundled default model
(the NanoDet-g student), default flags and output paths, in a fresh working directory, each as its own process. Each must exit 0, print
no traceback and leave the outputs the docs promise; bad input must give one error line and exit 2.

`DOC_COMMANDS` names, for every command the docs show, the test that runs it (here, or a test of its
own for the slow ones, on their documented short options); `test_docs.py` fails for a documented
command without one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from split_perception.model_files import DEFAULT_MODEL
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.onboard.export_files import export_dir_for

from .test_eval_bag import _third_party_mcap, write_features_bag

REPO = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "split-perception"
THIS = "test_user_commands.py"

# every sub-command that README.md or docs/cli.md shows -> the test that runs it
DOC_COMMANDS = {
    "info": f"{THIS}::test_info",
    "make-dataset": f"{THIS}::test_eval_and_analyze_split_on_the_documented_data_folders",
    "train": "test_training.py::test_two_stage_training_lowers_loss_and_resumes",
    "refit-entropy": "test_entropy_refit.py::test_refit_lowers_bytes_and_changes_only_the_entropy_models",
    "encode": f"{THIS}::test_encode_and_decode",
    "decode": f"{THIS}::test_encode_and_decode",
    "eval": f"{THIS}::test_eval_and_analyze_split_on_the_documented_data_folders",
    "make-bag": f"{THIS}::test_eval_bag_on_the_sample_bag_as_in_the_readme",
    "export-onboard": f"{THIS}::test_export_onboard_of_your_own_checkpoint",
    "import-teacher": f"{THIS}::test_import_teacher_of_an_onnx_detector",
    "eval-bag": f"{THIS}::test_eval_bag_on_the_sample_bag_as_in_the_readme",
    "decode-bag": f"{THIS}::test_decode_bag_of_recorded_features",
    "demo": "test_demo.py::test_demo_with_default_output_folder_from_a_repository_copy",
    "fleet-certs": "test_zenoh_security.py::test_fleet_certs_as_in_the_readme",
    "fuzz": "test_fuzz.py::test_fuzz_command_on_the_real_decoder",
    "analyze-split": f"{THIS}::test_analyze_split_of_the_real_detector_on_the_footage_folders",  # + the next one
    "analyze-split --model synthetic": f"{THIS}::test_eval_and_analyze_split_on_the_documented_data_folders",
    "bench rate-accuracy": "test_bench_rate_accuracy.py::test_rate_accuracy_command_small_run",  # + the video one
    "bench rate-accuracy --video": f"{THIS}::test_video_rate_accuracy_as_in_the_docs",
    "bench temporal": "test_bench_temporal.py::test_temporal_command_small_run",
    "bench loss": "test_bench_loss.py::test_loss_command_small_run",
    "bench latency": "test_bench_latency.py::test_latency_command_small_run",
    "bench onboard": "test_bench_onboard.py::test_bench_onboard_rows_for_both_runtimes",
    "bench switch": "test_bench_switch.py::test_switch_through_ros_node",
    "bench transport": "test_bench_transport.py::test_transport_short_run_over_dds",
    "bench encoder-node": "test_bench_encoder_node.py::test_encoder_node_short_run_over_dds",
    "bench fleet": "test_bench_fleet.py::test_fleet_short_run_over_dds",
    "bench failover": "test_bench_failover.py::test_failover_short_run",
    "bench batch": "test_bench_batch.py::test_batch_small_run",
    "bench soak": "test_bench_soak.py::test_soak_run_over_dds",
    "bench restart": "test_bench_restart.py::test_restart_short_run_over_dds",
    "bench link": "test_bench_link.py::test_link_bench_short_run",
    "bench report": "test_bench_report.py::test_report_replaces_only_the_marked_section",
}


def readme_line(start: str) -> str:
    """The README's command line that holds `start`, without its comment."""
    line = next(x for x in (REPO / "README.md").read_text().splitlines() if start in x and "split-perception" in x)
    return line.split("#")[0].strip()


def run(cwd: Path, command: str, expect: int = 0, **subs: str) -> subprocess.CompletedProcess:
    """A documented command line, placeholders replaced (`subs`: doc text -> value), as its own process
    in `cwd`: `split-perception`, `.venv/bin/split-perception` and `python3` are this environment's."""
    for doc, value in subs.items():
        command = command.replace(doc, value)
    argv = shlex.split(command)
    if argv[0].endswith("split-perception"):
        argv[0] = str(EXE)
    elif argv[0] == "python3":
        argv[0] = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=1200)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
    assert res.returncode == expect, f"{command}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    if expect == 2:
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and ("[ERROR] " in lines[0] or "error:" in lines[0]), res.stderr
    return res


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    """A fresh working directory, nothing of the repository in it."""
    return tmp_path_factory.mktemp("user")


@pytest.fixture(scope="module")
def sample_bag(user) -> Path:
    run(user, "split-perception make-bag OUT --frames N", OUT="sample_bag", N="6")
    return user / "sample_bag"


def _check_eval_bag(out: Path, stdout: str, widths) -> dict:
    for name in ("eval_bag.json", "eval_bag.csv", "table.md", "bytes_agreement.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list((out / "annotated").glob("*.png"))
    res = json.loads((out / "eval_bag.json").read_text())
    ours = {r["setting"]: r for r in res["rows"] if r["method"] == "ours"}
    assert sorted(ours) == sorted(f"w={w:g}" for w in widths)
    assert all(0 < r["bytes_mean"] < 20_000 for r in ours.values()), ours
    for w in widths:
        assert f"| ours | w={w:g} |" in stdout
    return res


def test_eval_bag_on_the_sample_bag_as_in_the_readme(user, sample_bag):
    """The default model on a bag of synthetic shapes: the teacher is the reference; the ground truth beside
    the bag names the synthetic model's classes, not COCO's, so it is left out, and the table says so."""
    res = run(user, ".venv/bin/split-perception eval-bag ~/bags/flight1", **{"~/bags/flight1": "sample_bag"})
    widths = OnboardEncoder().widths
    out = _check_eval_bag(user / "out" / "eval_bag" / "sample_bag", res.stdout, widths)
    assert out["frames"] == 6 and out["reference"] == "teacher" and out["ground_truth"] is None
    assert "other classes" in out["ground_truth_ignored"] and "ground truth beside the bag is not used" in res.stdout


def test_eval_bag_on_a_bare_mcap_of_another_tool_with_topic_and_max_frames(user):
    _third_party_mcap(user / "flight1.mcap", bgr=3, mono=2, depth=1)
    res = run(user, ".venv/bin/split-perception eval-bag ~/bags/flight1 --topic /front/image_raw --max-frames 300",
              **{"~/bags/flight1": "flight1.mcap"})
    out = _check_eval_bag(user / "out" / "eval_bag" / "flight1", res.stdout, OnboardEncoder().widths)
    assert out["frames"] == 5 and out["skipped"] == {"16UC1": 1}


def test_eval_bag_on_a_sqlite3_bag_of_compressed_images_and_as_a_module(user):
    run(user, "split-perception make-bag OUT --frames N --storage sqlite3 --image-format jpeg", OUT="jpeg_bag", N="3")
    res = run(user, "python3 -m split_perception.cli eval-bag jpeg_bag --out out/module")
    out = _check_eval_bag(user / "out" / "module", res.stdout, OnboardEncoder().widths)
    assert out["frames"] == 3 and out["encodings"] == {"jpeg": 3}


def test_decode_bag_of_recorded_features(user, sample_bag):
    import cv2

    from .test_teacher_nanodet import PHOTOS

    enc = OnboardEncoder()
    photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(PHOTOS.glob("*.jpg"))]
    packets = []
    for i in range(4):
        enc.set_width(enc.widths[i % len(enc.widths)])
        packets.append(enc.encode(cv2.resize(photos[i % len(photos)], (640, 480)), i, i))
    write_features_bag(user / "features_bag", enc.fingerprint, packets, (480, 640))
    res = run(user, "split-perception decode-bag FEATURES_BAG -o results.json", FEATURES_BAG="features_bag")
    out = json.loads((user / "results.json").read_text())
    assert out["decoded"] == 4 and out["refused"] == {} and out["detections"], res.stdout
    # a camera bag is not a features bag, and a features bag is not a camera bag: one line each, exit 2
    run(user, "split-perception decode-bag FEATURES_BAG -o results.json", expect=2, FEATURES_BAG="sample_bag")
    run(user, ".venv/bin/split-perception eval-bag ~/bags/flight1", expect=2, **{"~/bags/flight1": "features_bag"})


def test_eval_bag_and_decode_bag_refuse_bad_input_in_one_line(user, tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    run(user, ".venv/bin/split-perception eval-bag ~/bags/flight1", expect=2, **{"~/bags/flight1": "no_such_bag"})
    run(user, "split-perception decode-bag FEATURES_BAG -o results.json", expect=2, FEATURES_BAG="no_such_bag")
    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(tmp_path / "no_camera", version=9) as w:  # a bag of strings: no camera topic in it
        conn = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        w.write(conn, 1, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    run(user, ".venv/bin/split-perception eval-bag ~/bags/flight1", expect=2,
        **{"~/bags/flight1": str(tmp_path / "no_camera")})
    _third_party_mcap(tmp_path / "depth_only.mcap", bgr=0, mono=0, depth=2)
    res = run(user, ".venv/bin/split-perception eval-bag ~/bags/flight1", expect=2,
              **{"~/bags/flight1": str(tmp_path / "depth_only.mcap")})
    assert "16UC1" in res.stderr


def test_encode_and_decode(user):
    """Real photos (a street, a football crowd, fruit) through the default model; it has no segmentation
    head, so `--masks` is refused in one line (test_cli.py writes masks with a model that segments)."""
    import cv2

    from .test_teacher_nanodet import PHOTOS

    (user / "photos").mkdir()
    for src in sorted(PHOTOS.glob("*.jpg")):
        cv2.imwrite(str(user / "photos" / f"{src.stem}.png"), cv2.imread(str(src)))
    images = " ".join(sorted(str(p.relative_to(user)) for p in (user / "photos").glob("*.png")))
    res = run(user, "split-perception encode IMG... --width W -o DIR", **{"IMG...": images, "W": "0.5", "DIR": "pk"})
    assert "onnx" in res.stdout  # the bundled model ships its onboard export: runtime auto takes it
    packets = " ".join(sorted(str(p.relative_to(user)) for p in (user / "pk").glob("*.spf")))
    assert len(packets.split()) == 3
    run(user, "split-perception decode PKT... -o results.json --images IMAGES",
        **{"PKT...": packets, "IMAGES": "photos"})
    dets = json.loads((user / "results.json").read_text())
    assert "person" in {d["label"] for d in dets} <= set(OnboardEncoder().cfg.class_names)
    assert len(list((user / "annotated").glob("*.png"))) == 3
    res = run(user, "split-perception decode PKT... -o results.json --masks MASKS", expect=2,
              **{"PKT...": packets, "MASKS": "masks"})
    assert "no segmentation head" in res.stderr and not (user / "masks").exists()


def test_info(user):
    res = run(user, "split-perception info")
    enc = OnboardEncoder()
    assert enc.fingerprint in res.stdout and "(up to date)" in res.stdout
    assert all(f"{w:5.2f}" in res.stdout for w in enc.widths)
    assert "teacher:      nanodet_g" in res.stdout and f"split at tensor {enc.cfg.teacher_spec().split.tensor}" in res.stdout


def test_export_onboard_of_your_own_checkpoint(user):
    shutil.copy(DEFAULT_MODEL, user / "model.pt")
    res = run(user, "split-perception export-onboard --model model.pt")
    assert (user / "model.onboard" / "manifest.json").is_file(), res.stdout
    shipped = json.loads((export_dir_for(DEFAULT_MODEL) / "manifest.json").read_text())
    assert json.loads((user / "model.onboard" / "manifest.json").read_text())["fingerprint"] == shipped["fingerprint"]


def test_eval_and_analyze_split_on_the_documented_data_folders(user):
    # the data folders docs/training.md makes, smaller: `eval` and `analyze-split` of the synthetic model read them
    run(user, "split-perception make-dataset data/synthetic/val -n 4 --seed 2")
    run(user, "split-perception make-dataset data/synthetic/fit -n 4 --seed 1")
    run(user, "split-perception eval --model synthetic --out F", F="eval.json")
    res = json.loads((user / "eval.json").read_text())["results"]
    assert set(res) == {"teacher", *(str(w) for w in OnboardEncoder("synthetic").widths)}
    res = run(user, "split-perception eval --out F", expect=2, F="eval.json")  # the default model has no labels here
    assert "--model synthetic" in res.stderr
    run(user, "split-perception analyze-split --model synthetic --quick --splits 5,7")
    out = user / "results" / "bench" / "analyze_split"  # where benchmarks write by default
    assert (out / "analyze_split.json").is_file() and (out / "table.md").is_file()


def test_import_teacher_of_an_onnx_detector(user):
    from split_perception.teachers.spec import BUNDLED_TEACHERS, load_teacher_spec

    onnx_file = BUNDLED_TEACHERS / "nanodet_g" / "model.onnx"
    res = run(user, "split-perception import-teacher mydet.onnx --split TENSOR --like nanodet_g --out teachers/mydet",
              **{"mydet.onnx": str(onnx_file), "TENSOR": "backbone_stride_8"})
    assert "max abs difference 0" in res.stdout, res.stdout
    spec = load_teacher_spec(user / "teachers" / "mydet")
    assert spec.split.shape == (1, 128, 52, 52) and len(spec.class_names) == 80
    assert (user / "teachers" / "mydet" / "student.yaml").is_file()
    res = run(user, "split-perception import-teacher mydet.onnx --split TENSOR --like nanodet_g --out teachers/bad",
              expect=2, **{"mydet.onnx": str(onnx_file), "TENSOR": "backbone_stride_16"})
    assert "does not separate" in res.stderr and "backbone_stride_8" in res.stderr


def test_real_detector_on_a_clip_as_in_the_readme(user):
    """The README's lines of the default model, on a short street clip in place of the whole held-out clip
    (for time)."""
    import cv2

    from .test_teacher_nanodet import PHOTOS

    clip = user / "street.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for i in range(3):
        writer.write(np.roll(cv2.resize(cv2.imread(str(PHOTOS / "vtest_frame397.jpg")), (768, 576)), 8 * i, axis=1))
    writer.release()
    run(user, readme_line("make-bag vtest_bag"), **{"data/footage/heldout/clips/vtest.avi": str(clip)})
    res = run(user, readme_line("eval-bag vtest_bag"))
    out = _check_eval_bag(user / "out" / "eval_bag" / "vtest_bag", res.stdout, OnboardEncoder().widths)
    assert out["frames"] == 3 and out["reference_detections"] > 0
    assert all(r["mask_agreement"] is None for r in out["rows"])  # NanoDet-g has no segmentation head


def test_analyze_split_of_the_real_detector_on_the_footage_folders(tmp_path):
    """docs/cli.md's `analyze-split` of the default model, default flags, in a folder laid out as `make footage`
    lays it out (one short held-out clip, one training photo): a table of every cut and a suggestion."""
    import cv2

    from .test_teacher_nanodet import PHOTOS

    line = next(x for x in (REPO / "docs" / "cli.md").read_text().splitlines() if "analyze-split [--agreement" in x)
    command = line.split("`")[1].split(" [")[0]
    clips, photos = tmp_path / "data/footage/heldout/clips", tmp_path / "data/footage/train/photos"
    clips.mkdir(parents=True)
    photos.mkdir(parents=True)
    writer = cv2.VideoWriter(str(clips / "street.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (384, 288))
    frame = cv2.resize(cv2.imread(str(PHOTOS / "vtest_frame397.jpg")), (384, 288))
    for i in range(2):
        writer.write(np.roll(frame, 6 * i, axis=1))
    writer.release()
    cv2.imwrite(str(photos / "messi.png"), cv2.imread(str(PHOTOS / "messi5.jpg")))
    res = run(tmp_path, command)
    folder = tmp_path / "results/bench/analyze_split_nanodet_g"
    out = json.loads((folder / "analyze_split.json").read_text())
    assert out["frames"] == 1 and out["configured_split"] == "Conv_6:0" and len(out["splits"]) >= 4
    assert out["reasoning"] in res.stdout and (folder / "table.md").is_file()


def test_video_rate_accuracy_as_in_the_docs(user):
    """docs/cli.md's video line and the README's `bench rate-accuracy` line with the default model, on a short
    clip in the default footage folders (for time: the held-out clips are long, and `make test` fetches no
    training photos)."""
    import cv2

    from .test_teacher_nanodet import PHOTOS

    clips, photos = user / "data" / "footage" / "heldout" / "clips", user / "data" / "footage" / "train" / "photos"
    clips.mkdir(parents=True)
    photos.mkdir(parents=True)
    writer = cv2.VideoWriter(str(clips / "street.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for i in range(3):
        writer.write(np.roll(cv2.resize(cv2.imread(str(PHOTOS / "vtest_frame397.jpg")), (768, 576)), 8 * i, axis=1))
    writer.release()
    cv2.imwrite(str(photos / "messi.png"), cv2.imread(str(PHOTOS / "messi5.jpg")))
    res = run(user, "split-perception bench rate-accuracy --video --max-images 15")
    out = json.loads((user / "results" / "bench" / "rate_accuracy_video" / "rate_accuracy.json").read_text())
    assert out["frames"] == 3 and out["fps"] == 10 and out["reference_detections"] > 0
    assert {"x264", "x265", "av1", "x264-intra", "x265-intra", "av1-intra"} <= {r["method"] for r in out["rows"]}
    assert all("x264_bytes_min" in h and "av1_bytes_min" in h for h in out["headline"])
    assert "best video / ours" in res.stdout
    # the README's line before it, default flags: every 5th frame of the held-out clips (here one)
    run(user, ".venv/bin/split-perception bench rate-accuracy")
    real = json.loads((user / "results" / "bench" / "rate_accuracy_real" / "rate_accuracy.json").read_text())
    assert real["frames"] == 1 and real["reference_detections"] > 0
    assert {"teacher", "ours", "jpeg", "webp", "pca"} <= {r["method"] for r in real["rows"]}
