"""Onboard: encoder + link monitor. ros2 launch split_perception onboard.launch.py camera:=/camera/image_raw"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("split_perception"), "config")
    camera = LaunchConfiguration("camera")
    # launch_ros reads plain substitutions as YAML ("2024" -> int): force strings
    model = ParameterValue(LaunchConfiguration("model_path"), value_type=str)
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to encode"),
        DeclareLaunchArgument("features", default_value="/split_perception/features",
                              description="EncodedFeatures output topic (what goes over the link)"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint; empty = bundled model"),
        Node(package="split_perception", executable="encoder", name="encoder", output="screen",
             parameters=[os.path.join(config, "encoder.yaml"), {"model_path": model}],
             remappings=[("image", camera), ("features", LaunchConfiguration("features"))]),
        Node(package="split_perception", executable="link_monitor", name="link_monitor", output="screen",
             parameters=[os.path.join(config, "link_monitor.yaml"), {"model_path": model}],
             remappings=[("link_status", "/split_perception/link_status"),
                         ("link_bandwidth", "/split_perception/link_bandwidth"),
                         ("features", LaunchConfiguration("features"))]),  # counts what the encoder sends
    ])
