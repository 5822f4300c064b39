"""Whole loop on one machine: bag player -> encoder -> link emulator -> decoder, with the link monitor.

ros2 launch split_perception demo.launch.py bag:=/path/to/bag
(`split-perception demo` starts the same nodes with the same config files without ros2 launch.)
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("split_perception"), "config")
    # launch_ros reads plain substitutions as YAML ("2024" -> int): force strings
    model = ParameterValue(LaunchConfiguration("model_path"), value_type=str)

    def cfg(name):
        return os.path.join(config, f"{name}.yaml")

    def topic(name):  # the topics of onboard.launch.py and offboard.launch.py for one robot
        return f"/split_perception/{name}"

    # camera -> encoder: whole 640x480 frames through Fast DDS shared memory (README, "Onboard install")
    def robot(context):
        profile = LaunchConfiguration("fastdds_profile").perform(context)
        robot_env = {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}  # as onboard.launch.py
        return [
            Node(package="split_perception", executable="bag_player", name="bag_player", output="screen",
                 parameters=[cfg("bag_player"), {"bag": ParameterValue(LaunchConfiguration("bag"), value_type=str),
                                                 "loop": True}],
                 remappings=[("image", "/camera/image_raw"), ("image/compressed", "/camera/image_raw/compressed")],
                 additional_env=robot_env),
            Node(package="split_perception", executable="encoder", name="encoder", output="screen",
                 parameters=[cfg("encoder"), {"model_path": model}],
                 remappings=[("image", "/camera/image_raw"), ("image/compressed", "/camera/image_raw/compressed"),
                             ("features", topic("features_onboard"))],
                 additional_env=robot_env),
        ]

    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 with a camera topic (split-perception make-bag)"),
        DeclareLaunchArgument("bandwidth", default_value="steps:3e6@0,0.06e6@12,0.14e6@22,3e6@30",
                              description="emulated link: bits/s, steps (rate@second) or a CSV file"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint or bundled model (nanodet_g, synthetic); empty = nanodet_g"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(config, "fastdds_large_frames.xml"),
                              description="FASTDDS_DEFAULT_PROFILES_FILE of the bag player and the encoder; empty = "
                                          "Fast DDS defaults"),
        OpaqueFunction(function=robot),
        Node(package="split_perception", executable="link_emulator", name="link_emulator", output="screen",
             parameters=[cfg("link_emulator"), {"bandwidth": ParameterValue(LaunchConfiguration("bandwidth"), value_type=str)}],
             remappings=[("features_in", topic("features_onboard")), ("features_out", topic("features")),
                         ("link_bandwidth", topic("link_bandwidth"))]),
        Node(package="split_perception", executable="decoder", name="decoder", output="screen",
             parameters=[cfg("decoder"), {"model_path": model}],
             remappings=[(t, topic(t)) for t in ("features", "detections", "segmentation", "annotated", "link_status")]),
        Node(package="split_perception", executable="link_monitor", name="link_monitor", output="screen",
             parameters=[cfg("link_monitor"), {"model_path": model}],
             remappings=[("features", topic("features_onboard")),  # the encoder's side of the emulated link
                         ("link_status", topic("link_status")), ("link_bandwidth", topic("link_bandwidth"))]),
    ])
