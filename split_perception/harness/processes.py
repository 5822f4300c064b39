"""Start the nodes as separate processes without `ros2 launch` (demo, tests, benchmarks).

The nodes run from the colcon install space (messages + this package, symlinked to the sources),
built by `scripts/build_ros.sh`; this module finds it and sets the environment they need.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
# this checkout's install space (`make ros`), or the one `colcon test` names for the package it tests
INSTALL = Path(os.environ.get("SPLIT_PERCEPTION_INSTALL") or REPO / ".colcon" / "install" / "split_perception")
CONFIG = REPO / "config"
LARGE_FRAMES_PROFILE = CONFIG / "fastdds_large_frames.xml"  # whole camera frames through shared memory
# what the README has every process on a robot run with (its camera driver above all): the profile
ROBOT_ENV = {"FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_FRAMES_PROFILE)}


def install_space() -> Path:
    if not (INSTALL / "lib" / "split_perception" / "encoder").exists():
        raise ConfigError(f"ROS messages are not built ({INSTALL} missing): run `make ros` "
                          "(or scripts/build_ros.sh)")
    return INSTALL


def ros_env(domain_id: int, base: dict | None = None) -> dict:
    """Environment for a node process: install space first on the paths, own ROS_DOMAIN_ID."""
    inst = install_space()
    env = dict(os.environ if base is None else base)
    site = inst / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(inst / "lib"), env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(inst), sys.prefix])
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # all processes are on this machine
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_node(executable: str, domain_id: int, params: dict | None = None, params_file: Path | None = None,
               remap: dict | None = None, log_path: Path | None = None, name: str | None = None,
               prefix: list[str] | None = None, env: dict | None = None, namespace: str = "") -> subprocess.Popen:
    """One node in its own process (stdout+stderr to `log_path`, or inherited), in `namespace`
    (a robot of a fleet) if given; `prefix` wraps the
    command (e.g. `ip netns exec NS`), `env` adds variables. The node runs in the caller's working
    directory, and `Path` parameters are made absolute, so relative paths mean what the caller meant."""
    exe = install_space() / "lib" / "split_perception" / executable
    cmd = [*(prefix or []), sys.executable, str(exe), "--ros-args"]
    if name:
        cmd += ["-r", f"__node:={name}"]
    if namespace:
        cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
    if params_file:
        cmd += ["--params-file", str(Path(params_file).resolve())]
    for k, v in (params or {}).items():
        cmd += ["-p", f"{k}:={_param(v)}"]
    for a, b in (remap or {}).items():
        cmd += ["-r", f"{a}:={b}"]
    out = open(log_path, "w") if log_path else None
    return subprocess.Popen(cmd, env={**ros_env(domain_id), **(env or {})}, stdout=out,
                            stderr=subprocess.STDOUT if out else None, start_new_session=True)


def _param(v) -> str:
    if isinstance(v, Path):
        return str(v.resolve())
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return repr(v) if v == "" else v
    return str(v)


def stop(procs, timeout: float = 10.0) -> None:
    """SIGINT, then SIGKILL after `timeout`: every process ends, whatever state it is in."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for p in procs:  # all were signalled at once: each gets `timeout`, none is starved by a slow one
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def python_module(module: str) -> list[str]:
    """`python -P -m module`: -P keeps the working directory off sys.path, so the package comes
    from the install space (with msg/) wherever the process starts."""
    return [sys.executable, "-P", "-m", module]


def start_probe(cfg: dict, work_dir: Path, domain_id: int, prefix: list[str] | None = None,
                env: dict | None = None, name: str = "probe") -> subprocess.Popen:
    """Start the probe process (split_perception.harness.probe); it writes `name`_out.json when done."""
    work_dir = Path(work_dir)
    (work_dir / f"{name}.json").write_text(json.dumps(cfg))
    cmd = [*(prefix or []), *python_module("split_perception.harness.probe"), str(work_dir / f"{name}.json"),
           str(work_dir / f"{name}_out.json")]
    return subprocess.Popen(cmd, env={**ros_env(domain_id), **(env or {})}, cwd=work_dir, start_new_session=True)


def finish_probe(proc: subprocess.Popen, cfg: dict, work_dir: Path, name: str = "probe") -> dict:
    """Wait for a probe started with `start_probe` and return its record."""
    try:
        rc = proc.wait(timeout=cfg["seconds"] + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if rc != 0:
        raise subprocess.CalledProcessError(rc, proc.args)
    return json.loads((Path(work_dir) / f"{name}_out.json").read_text())


def run_probe(cfg: dict, work_dir: Path, domain_id: int, prefix: list[str] | None = None,
              env: dict | None = None) -> dict:
    """Run the probe for `cfg["seconds"]` and return its record."""
    return finish_probe(start_probe(cfg, work_dir, domain_id, prefix, env), cfg, work_dir)


ROS_LOCALHOST = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}  # DDS discovery never leaves the host (netns)
READY = ("encoder", "decoder", "zenoh_bridge")  # the nodes that log "<name> ready" once set up
READY_TIMEOUT_S = 180.0  # a loaded 2-core machine takes many times the ~5 s of a quiet one


def wait_ready(log_dir: Path, *nodes: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Until each node's log (`log_dir`/<node>.log) says it is ready: start the camera after this."""
    for n in nodes:
        wait_for_log(Path(log_dir) / f"{n}.log", f"{n} ready", timeout)


def wait_for_log(log: Path, text: str, timeout: float) -> None:
    """Block until a node's log contains `text` (e.g. "encoder ready"); TimeoutError with its tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise TimeoutError(f"{log.name}: no '{text}' after {timeout:.0f} s:\n{tail}")
