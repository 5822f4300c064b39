"""The ROS 2 package files: launch files, configs and executables agree with the nodes."""

import ast
import importlib.util
import py_compile
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from split_perception.errors import ImageError

REPO = Path(__file__).resolve().parents[1]
NODES = {"encoder": "encoder_node", "decoder": "decoder_node", "link_monitor": "link_monitor_node",
         "link_emulator": "link_emulator_node", "bag_player": "bag_player_node", "zenoh_bridge": "zenoh_bridge_node"}


def declared_parameters(module: str) -> set[str]:
    src = (REPO / "split_perception" / "ros" / f"{module}.py").read_text()
    names = set(re.findall(r'declare_parameter\(\s*"(\w+)"', src))
    if module == "link_monitor_node":  # policy fields are declared in a loop
        from split_perception.link.policy import PolicyConfig

        names |= set(vars(PolicyConfig()))
    return names


@pytest.mark.parametrize("node", sorted(NODES))
def test_config_files_only_set_declared_parameters(node):
    cfg = yaml.safe_load((REPO / "config" / f"{node}.yaml").read_text())
    params = set((cfg.get(node) or cfg[f"/**/{node}"])["ros__parameters"])
    assert params <= declared_parameters(NODES[node]), params - declared_parameters(NODES[node])


NAMESPACE_CHECK = """
import sys, rclpy
from rclpy.node import Node
path, name, ns = sys.argv[1:]
ctx = rclpy.Context()
rclpy.init(args=["--ros-args", "--params-file", path], context=ctx)
node = Node(name, namespace=ns, context=ctx, automatically_declare_parameters_from_overrides=True)
print(sorted(node.get_parameters_by_prefix("")))
node.destroy_node()
rclpy.shutdown(context=ctx)
"""


@pytest.mark.parametrize("node", ["encoder", "link_monitor", "decoder", "zenoh_bridge"])
def test_config_files_reach_nodes_in_a_robot_namespace(node):
    """`onboard.launch.py robot:=r1` runs /r1/encoder ...: rcl must apply the file there as at the root."""
    import subprocess
    import sys

    from split_perception.harness.domains import pick_domain
    from split_perception.harness.processes import ros_env

    cfg = yaml.safe_load((REPO / "config" / f"{node}.yaml").read_text())
    expected = cfg[f"/**/{node}"]["ros__parameters"]
    for ns in ("/", "/r1"):
        r = subprocess.run([sys.executable, "-c", NAMESPACE_CHECK, str(REPO / "config" / f"{node}.yaml"), node, ns],
                           env=ros_env(pick_domain()), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        assert set(expected) <= set(ast.literal_eval(r.stdout.strip().splitlines()[-1])), ns


def test_cmake_installs_every_executable():
    cmake = (REPO / "CMakeLists.txt").read_text()
    for exe in NODES:
        assert f"scripts/{exe}" in cmake and (REPO / "scripts" / exe).is_file()


def test_colcon_test_runs_the_registered_lint_and_suite(tmp_path):
    """`colcon test` in a workspace runs ruff and the pytest suite (against the install space it built);
    here ruff runs, the suite is only listed: running it would run this test again."""
    import os
    import subprocess
    import sys

    base = tmp_path / "colcon"
    run = subprocess.run([str(REPO / "scripts" / "build_ros.sh"), sys.prefix, "--test", "--ctest-args", "-R", "ruff"],
                         env={**os.environ, "COLCON_BASE": str(base)}, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ruff.xml: 1 test, 0 errors, 0 failures, 0 skipped" in run.stdout, run.stdout[-3000:]
    listed = subprocess.run(["ctest", "-N", "-V"], cwd=base / "build" / "split_perception", capture_output=True,
                            text=True, timeout=60).stdout
    assert re.search(r"Test +#\d+: pytest", listed) and re.search(r"Test +#\d+: ruff", listed), listed
    assert f"SPLIT_PERCEPTION_INSTALL={base / 'install' / 'split_perception'}" in listed  # the nodes it built
    assert "PYTEST_ADDOPTS=-m 'not slow'" in listed  # as `make test`


@pytest.mark.parametrize("name", ["onboard", "offboard", "demo", "fleet"])
def test_launch_files_are_valid_python_with_described_arguments(name):
    path = REPO / "launch" / f"{name}.launch.py"
    py_compile.compile(str(path), doraise=True)
    tree = ast.parse(path.read_text())
    args = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"]
    assert args and all(any(k.arg == "description" for k in c.keywords) for c in args)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch/launch_ros are not on PyPI; tested where a ROS distro provides them")
@pytest.mark.parametrize("name", ["onboard", "offboard", "demo", "fleet"])
def test_launch_files_load_with_real_launch(name, monkeypatch):
    import os

    from launch import LaunchContext
    from split_perception.harness.processes import install_space

    # the launch files find config/ through the ament index: this checkout's install space first
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(
        p for p in (str(install_space()), os.environ.get("AMENT_PREFIX_PATH", "")) if p))
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    src = PythonLaunchDescriptionSource(str(REPO / "launch" / f"{name}.launch.py"))
    assert src.get_launch_description(LaunchContext()).entities  # the location is a substitution: needs a context


def test_image_conversion_encodings():
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from split_perception.ros.image_conversion import (
        compressed_to_rgb,
        image_to_rgb,
        rgb_to_image,
    )

    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb, Image().header)
    assert np.array_equal(image_to_rgb(msg), rgb)
    bgr = rgb_to_image(rgb[..., ::-1].copy(), Image().header)
    bgr.encoding = "bgr8"
    assert np.array_equal(image_to_rgb(bgr), rgb)
    mono = rgb_to_image(rgb[..., 0].copy(), Image().header, "mono8")
    assert np.array_equal(image_to_rgb(mono)[..., 1], rgb[..., 0])
    padded = rgb_to_image(rgb, Image().header)
    padded.step = 8 * 3 + 4  # rows with padding bytes
    padded.data = b"".join(rgb[r].tobytes() + b"\0" * 4 for r in range(6))
    assert np.array_equal(image_to_rgb(padded), rgb)
    c = CompressedImage()
    c.format = "png"
    c.data = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    assert np.array_equal(compressed_to_rgb(c), rgb)
    for bad in ("yuv422", "32FC1"):
        m = rgb_to_image(rgb, Image().header)
        m.encoding = bad
        with pytest.raises(ImageError, match="unsupported"):
            image_to_rgb(m)
    short = rgb_to_image(rgb, Image().header)
    short.data = short.data[:10]
    with pytest.raises(ImageError):
        image_to_rgb(short)
    c.data = b"not an image"
    with pytest.raises(ImageError):
        compressed_to_rgb(c)


def test_bags_round_trip_and_broken_bag(tmp_path):
    from split_perception.data.bags import (
        BagError,
        ground_truth_path,
        read_images,
        write_sample_bag,
    )
    from split_perception.data.image_messages import compressed_to_rgb

    for storage in ("mcap", "sqlite3"):
        bag = write_sample_bag(tmp_path / storage, frames=4, size=(48, 64), storage=storage)
        imgs = list(read_images(bag))
        assert len(imgs) == 4 and imgs[0].msg.encoding == "rgb8" and ground_truth_path(bag).is_file()
    jpeg = write_sample_bag(tmp_path / "jpeg", frames=3, size=(48, 64), storage="sqlite3", image_format="jpeg")
    imgs = list(read_images(jpeg))
    assert [(m.topic, m.msg.format) for m in imgs] == [("/camera/image_raw/compressed", "jpeg")] * 3
    assert compressed_to_rgb(imgs[0].msg).shape == (48, 64, 3)
    mcap = next((tmp_path / "mcap").glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])  # truncated file: no footer, no index
    got = []
    with pytest.raises(BagError, match=rf"{mcap}: damaged at byte \d+.*; 2 camera messages before it"):
        got.extend(read_images(tmp_path / "mcap"))
    assert len(got) == 2 and got[1].msg.encoding == "rgb8"  # the frames before the cut come out
    bad_index = bytearray(data)
    bad_index[-28:-20] = struct.pack("<Q", 1)  # the footer's summary offset: rosbags cannot use the index
    mcap.write_bytes(bytes(bad_index))
    assert len(list(read_images(tmp_path / "mcap"))) == 4  # every record is whole: all frames, no error
    t2 = 1_700_000_000_000_000_000 + 2 * 100_000_000  # the third frame's log/publish time (10 fps)
    rec3 = data.index(struct.pack("<QQ", t2, t2)) - 15  # opcode, length, channel id, sequence come first
    corrupt = bytearray(data)
    corrupt[rec3 + 1:rec3 + 9] = b"\xff" * 8  # an impossible record length
    mcap.write_bytes(bytes(corrupt))
    got = []
    with pytest.raises(BagError, match=f"damaged at byte {rec3}: .*; 2 camera messages before it"):
        got.extend(read_images(tmp_path / "mcap"))
    assert len(got) == 2
    with pytest.raises(BagError, match="not found"):
        list(read_images(tmp_path / "nope"))
