"""Onboard: encoder + link monitor.

ros2 launch split_perception onboard.launch.py camera:=/camera/image_raw          # /split_perception/*
ros2 launch split_perception onboard.launch.py robot:=r1 camera:=/r1/camera/image_raw  # a fleet member: /r1/*
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

FASTDDS_PROFILE = "fastdds_large_frames.xml"  # in the package's config/


def _stack(context):
    config = os.path.join(get_package_share_directory("split_perception"), "config")
    robot = LaunchConfiguration("robot").perform(context).strip("/")
    prefix = f"/{robot}" if robot else "/split_perception"  # where this robot's topics live
    features = LaunchConfiguration("features").perform(context) or f"{prefix}/features"
    # launch_ros reads plain substitutions as YAML ("2024" -> int): force strings
    model = ParameterValue(LaunchConfiguration("model_path"), value_type=str)
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    robot_env = {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}
    return [
        Node(package="split_perception", executable="encoder", name="encoder", namespace=robot, output="screen",
             parameters=[os.path.join(config, "encoder.yaml"), {"model_path": model}],
             remappings=[("image", LaunchConfiguration("camera")),  # input_type compressed: <camera>/compressed
                         ("image/compressed", [LaunchConfiguration("camera"), "/compressed"]), ("features", features)],
             additional_env=robot_env),
        Node(package="split_perception", executable="link_monitor", name="link_monitor", namespace=robot,
             output="screen", parameters=[os.path.join(config, "link_monitor.yaml"), {"model_path": model}],
             additional_env=robot_env,
             remappings=[("link_status", f"{prefix}/link_status"),
                         ("link_bandwidth", f"{prefix}/link_bandwidth"),
                         ("features", features)]),  # counts what the encoder sends
    ]


def generate_launch_description():
    config = os.path.join(get_package_share_directory("split_perception"), "config")
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to encode (<camera>/compressed with the "
                                          "encoder's input_type compressed)"),
        DeclareLaunchArgument("robot", default_value="",
                              description="this robot's name in a fleet: nodes in its namespace, topics "
                                          "/<robot>/features, link_status, link_bandwidth; empty = /split_perception/*"),
        DeclareLaunchArgument("features", default_value="",
                              description="EncodedFeatures output topic (what goes over the link); "
                                          "empty = /<robot>/features or /split_perception/features"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint or bundled model (nanodet_g, synthetic); empty = nanodet_g"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(config, FASTDDS_PROFILE),
                              description="FASTDDS_DEFAULT_PROFILES_FILE of the robot's nodes (whole camera frames "
                                          "through shared memory; give the camera driver the same); empty = "
                                          "Fast DDS defaults"),
        OpaqueFunction(function=_stack),
    ])
