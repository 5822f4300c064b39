#!/usr/bin/env bash
# Build the messages (and install the Python package beside them) with colcon, using the ROS 2
# pip wheels of the given venv. Output: .colcon/install (symlinked to the sources).
# Usage: scripts/build_ros.sh [VENV]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY="$(cd "$VENV/bin" && pwd)/python"
# The wheels' CMake targets name the paths of the machine they were built on; point them at this venv.
mkdir -p /opt/python/cp311-cp311/include /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core
ln -sfn "$("$PY" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')" /opt/python/cp311-cp311/include/python3.11
ln -sfn "$("$PY" -c 'import numpy;print(numpy.get_include())')" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
echo ">> colcon build (messages + Python package) -> .colcon/install"
VROOT="$(cd "$VENV" && pwd)"
PATH="$(dirname "$PY"):$PATH" AMENT_PREFIX_PATH="$VROOT${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" CMAKE_PREFIX_PATH="$VROOT${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" "$VENV/bin/colcon" --log-base .colcon/log build \
  --base-paths . --build-base .colcon/build --install-base .colcon/install --symlink-install \
  --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
  -DPython3_NumPy_INCLUDE_DIR=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
