#!/usr/bin/env bash
# Build the messages (and install the Python package beside them) with colcon, using the ROS 2
# pip wheels of the given venv. Output: $COLCON_BASE/install (default .colcon; symlinked to the sources).
# Usage: scripts/build_ros.sh [VENV]                 (default .venv)
#        scripts/build_ros.sh VENV --test [ARGS...]  build with the tests registered, then `colcon test`
#                                                    (ARGS go to it, e.g. --ctest-args -R ruff) and
#                                                    `colcon test-result`
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
BASE=${COLCON_BASE:-.colcon}
TESTING=OFF
if [[ "${2:-}" == "--test" ]]; then TESTING=ON; fi
PY="$(cd "$VENV/bin" && pwd)/python"
# The wheels' CMake targets name the paths of the machine they were built on; point them at this venv.
mkdir -p /opt/python/cp311-cp311/include /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core
ln -sfn "$("$PY" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')" /opt/python/cp311-cp311/include/python3.11
ln -sfn "$("$PY" -c 'import numpy;print(numpy.get_include())')" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
VROOT="$(cd "$VENV" && pwd)"
export PATH="$(dirname "$PY"):$PATH"
export AMENT_PREFIX_PATH="$VROOT${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VROOT${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
COLCON=("$VENV/bin/colcon" --log-base "$BASE/log")
echo ">> colcon build (messages + Python package) -> $BASE/install"
"${COLCON[@]}" build --base-paths . --build-base "$BASE/build" --install-base "$BASE/install" --symlink-install \
  --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=$TESTING \
  -DPython3_NumPy_INCLUDE_DIR=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
if [[ $TESTING == ON ]]; then
  echo ">> colcon test ${*:3}"
  "${COLCON[@]}" test --base-paths . --build-base "$BASE/build" --install-base "$BASE/install" \
    --event-handlers console_direct+ "${@:3}"
  "${COLCON[@]}" test-result --test-result-base "$BASE/build/split_perception" --all --verbose
fi
