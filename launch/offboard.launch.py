"""Offboard: decoder. ros2 launch split_perception offboard.launch.py"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("split_perception"), "config")
    return LaunchDescription([
        DeclareLaunchArgument("features", default_value="/split_perception/features",
                              description="EncodedFeatures input topic"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint; must be the encoder's"),
        Node(package="split_perception", executable="decoder", name="decoder", output="screen",
             parameters=[os.path.join(config, "decoder.yaml"), {"model_path": ParameterValue(LaunchConfiguration("model_path"), value_type=str)}],
             remappings=[("features", LaunchConfiguration("features")),
                         ("detections", "/split_perception/detections"),
                         ("segmentation", "/split_perception/segmentation"),
                         ("annotated", "/split_perception/annotated"),
                         ("link_status", "/split_perception/link_status")]),
    ])
