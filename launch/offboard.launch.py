"""Offboard: one decoder for one robot or a fleet.

ros2 launch split_perception offboard.launch.py                     # one robot, /split_perception/*
ros2 launch split_perception offboard.launch.py robots:="[r1, r2]"  # a fleet: /r1/features -> /r1/detections ...
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

TOPICS = ("detections", "segmentation", "annotated", "link_status")


def robot_list(text: str) -> list[str]:
    """`[r1, r2]`, `['r1', 'r2']` or `r1,r2` -> ["r1", "r2"]; empty -> [] (as fleet.launch.py reads it)."""
    return [r.strip(" []'\"/") for r in text.split(",") if r.strip(" []'\"/")]


def _decoder(context):
    config = os.path.join(get_package_share_directory("split_perception"), "config", "decoder.yaml")
    params = [config, {"model_path": ParameterValue(LaunchConfiguration("model_path"), value_type=str)}]
    robots = robot_list(LaunchConfiguration("robots").perform(context))
    if robots:  # every robot on its own namespace's topics
        return [Node(package="split_perception", executable="decoder", name="decoder", output="screen",
                     parameters=[*params, {"robots": robots}])]
    return [Node(package="split_perception", executable="decoder", name="decoder", output="screen",
                 parameters=params,
                 remappings=[("features", LaunchConfiguration("features")),
                             *[(t, f"/split_perception/{t}") for t in TOPICS]])]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("robots", default_value="",
                              description="robot namespaces to serve, e.g. [r1, r2]: /<robot>/features in, "
                                          "/<robot>/detections, segmentation, annotated, link_status out; "
                                          "empty = one robot on /split_perception/*"),
        DeclareLaunchArgument("features", default_value="/split_perception/features",
                              description="EncodedFeatures input topic (one robot, robots empty)"),
        DeclareLaunchArgument("model_path", default_value="", description="the encoders' checkpoint or bundled model (nanodet_g, synthetic); empty = nanodet_g"),
        OpaqueFunction(function=_decoder),
    ])
