"""A fleet on one machine, to try the fleet server: an onboard stack per robot, one decoder for all.

ros2 launch split_perception fleet.launch.py robots:="[r1, r2]"
Robot <r> encodes /<r>/camera/image_raw. On real robots, run onboard.launch.py robot:=<r> on each
and offboard.launch.py robots:="[...]" on the server instead.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def _fleet(context):
    launch_dir = os.path.join(get_package_share_directory("split_perception"), "launch")

    def include(name, **args):
        return IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(launch_dir, f"{name}.launch.py")),
                                        launch_arguments={**args, "model_path": LaunchConfiguration("model_path")}.items())

    text = LaunchConfiguration("robots").perform(context)
    robots = [r.strip(" []'\"/") for r in text.split(",") if r.strip(" []'\"/")]  # as offboard.launch.py reads it
    profile = LaunchConfiguration("fastdds_profile")
    return [*[include("onboard", robot=r, camera=f"/{r}/camera/image_raw", fastdds_profile=profile) for r in robots],
            include("offboard", robots=text)]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("robots", default_value="[r1, r2]",
                              description="robot namespaces; robot <r> encodes /<r>/camera/image_raw"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint or bundled model (nanodet_g, synthetic); empty = nanodet_g"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(
                                  get_package_share_directory("split_perception"), "config", "fastdds_large_frames.xml"),
                              description="FASTDDS_DEFAULT_PROFILES_FILE of the robots' nodes; empty = Fast DDS "
                                          "defaults"),
        OpaqueFunction(function=_fleet),
    ])
