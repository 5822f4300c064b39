"""Link monitor node: LinkStatus from the decoder (+ optional bandwidth reports, + the encoder's own
output rate) -> width and frame rate, set on the encoder through its standard parameter service,
exactly as `ros2 param set /encoder width W` / `max_rate_hz R` do. It follows the encoder's actual
setting from its parameter events, so a width set by hand pauses it instead of being undone.
"""

from __future__ import annotations

import time
from collections import deque

from rcl_interfaces.msg import ParameterDescriptor, ParameterEvent
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import Float64

from ..errors import ConfigError
from ..link.policy import Decision, LinkObservation, PolicyConfig, WidthPolicy
from ..model_files import MODEL_HELP
from ..msg import EncodedFeatures, LinkStatus
from ..onboard.export_files import widths_and_bytes
from .common import qos_from, run_node

SET_TIMEOUT_S = 5.0  # a set_parameters call not answered by then has failed
ENCODER_PARAMS = ("width", "max_rate_hz")
POLICY_DESCRIPTIONS = {
    "manual_hold_s": "after a width or max_rate_hz set on the encoder by anyone else, pause automatic "
                     "switching this long, then resume from that setting (0 = never pause)",
}


class LinkMonitorNode(Node):
    def __init__(self):
        super().__init__("link_monitor")
        d = ParameterDescriptor
        model_path = self.declare_parameter("model_path", "", d(
            description=f"the encoder's model (widths and their typical bytes/frame): {MODEL_HELP}; empty = the default",
            read_only=True)).value
        self.encoder_node = self.declare_parameter("encoder_node", "encoder", d(
            description="name of the encoder node whose `width` parameter is set", read_only=True)).value
        cfg = PolicyConfig()
        for name in vars(cfg):
            setattr(cfg, name, float(self.declare_parameter(name, getattr(cfg, name), d(
                description=POLICY_DESCRIPTIONS.get(name, f"policy: {name} (see split_perception/link/policy.py)"),
                read_only=True)).value))
        period = self.declare_parameter("period_s", 0.5, d(description="decision period", read_only=True)).value
        self.capacity_timeout = self.declare_parameter("capacity_timeout_s", 3.0, d(
            description="forget a bandwidth report after this long", read_only=True)).value
        self.status_timeout = self.declare_parameter("status_timeout_s", 3.0, d(
            description="no LinkStatus for this long = the link is down", read_only=True)).value
        widths, sizes = self._model_table(model_path or None)
        self.policy = WidthPolicy(widths, sizes, cfg)
        self.encoder_fqn = self.resolve_service_name(self.encoder_node)  # as parameter events name it
        self.add_post_set_parameters_callback(self._apply)  # also applies the declared value
        self.declare_parameter("auto", True, d(
            description="true: set the encoder's width and max_rate_hz; false: only observe"))
        self.params = AsyncParameterClient(self, self.encoder_node)
        self.params.on_parameter_event(self._on_parameter_event)
        self.create_subscription(LinkStatus, "link_status", self._on_status, 10)
        self.create_subscription(EncodedFeatures, "features", self._on_sent, qos_from("best_effort", 10))
        self.create_subscription(Float64, "link_bandwidth", self._on_bandwidth, 10)
        self.create_timer(period, self._tick)
        self.status: LinkStatus | None = None  # None until the decoder's first report: nothing judged before
        self.status_time = time.monotonic()
        self.first_status: float | None = None
        self.reports = 0  # LinkStatus messages received
        self._judged: LinkStatus | None = None  # the report the last decision was made on
        self.sent: deque[float] = deque()  # when the encoder published (onboard, before the link)
        self.first_sent: float | None = None
        self.capacity: tuple[float, float] | None = None  # (bps, monotonic time)
        self._reading: tuple[object, float] | None = None  # (get_parameters future, sent at)
        self._setting_read = False  # both values read from the encoder (events alone may miss one)
        self._inflight: tuple[object, float, Decision] | None = None  # (future, sent at, requested)
        self._paused = False  # a manual setting's hold was logged and has not ended yet
        self.switches = 0
        self.get_logger().info(f"link monitor: widths {widths}, bytes/frame {[round(s) for s in sizes]}, "
                               f"target {cfg.target_fps} fps")

    @staticmethod
    def _model_table(model_path):
        widths, sizes = widths_and_bytes(model_path)  # from the onboard export when there is one: no torch
        return widths, [float(sizes.get(str(w), 1000.0 * w)) for w in widths]

    def _apply(self, params) -> None:
        for p in params:
            if p.name == "auto":
                self.policy.auto = bool(p.value)
                self.get_logger().info(f"auto {str(p.value).lower()}: " + (
                    f"switching {self.encoder_fqn}'s width automatically" if p.value
                    else f"observing {self.encoder_fqn} only, never setting it"))

    # ---- what the encoder has ----------------------------------------------------------
    def _on_parameter_event(self, msg: ParameterEvent) -> None:
        if msg.node != self.encoder_fqn:
            return
        for initial, params in ((True, msg.new_parameters), (False, msg.changed_parameters)):
            values = {p.name: parameter_value_to_python(p.value) for p in params if p.name in ENCODER_PARAMS}
            if values:  # new_parameters: the encoder (re)started with these
                self._observe(values, initial)

    def _observe(self, values: dict, initial: bool) -> None:
        now = time.monotonic()
        try:
            manual = self.policy.observe_encoder(now, values.get("width"), values.get("max_rate_hz"), initial)
        except ConfigError as exc:
            self.get_logger().error(f"{self.encoder_fqn}: {exc}", throttle_duration_sec=5.0)
            return
        if initial:
            self.get_logger().info(f"{self.encoder_fqn} has " + ", ".join(f"{k} {v:g}" for k, v in values.items()))
        if manual:
            hold = self.policy.cfg.manual_hold_s
            self._paused = hold > 0 and self.policy.auto
            self.get_logger().info(f"manual {manual} on {self.encoder_fqn}: " + (
                "observed (auto is off)" if not self.policy.auto
                else f"automatic switching paused for {hold:g} s" if hold > 0
                else "automatic switching goes on from there (manual_hold_s 0)"))

    def _read_encoder(self) -> None:
        """The encoder's setting, read once it is there: the policy's first decision starts from it."""
        now = time.monotonic()
        if self._reading is None:
            if self.params.services_are_ready():
                self._reading = (self.params.get_parameters(list(ENCODER_PARAMS)), now)
            return
        future, sent = self._reading
        if not future.done() and now - sent > SET_TIMEOUT_S:
            future.cancel()
            self._reading = None  # ask again
        elif future.done():
            result, self._reading = future.result(), None
            if result is not None and len(result.values) == len(ENCODER_PARAMS):
                self._observe({n: parameter_value_to_python(v) for n, v in zip(ENCODER_PARAMS, result.values)},
                              initial=True)
                self._setting_read = True

    # ---- what the link carries ---------------------------------------------------------
    def _on_sent(self, msg: EncodedFeatures) -> None:
        self.sent.append(time.monotonic())
        if self.first_sent is None:
            self.first_sent = self.sent[-1]

    def _on_status(self, msg: LinkStatus) -> None:
        self.status, self.status_time = msg, time.monotonic()
        self.reports += 1
        if self.first_status is None:
            self.first_status = self.status_time
            self.get_logger().info("first link status from the decoder: judging the link from now on")
        if msg.fps > 0:
            self.policy.observe_bytes(round(msg.width, 3), msg.bytes_per_frame)

    def _on_bandwidth(self, msg: Float64) -> None:
        self.capacity = (msg.data, time.monotonic())

    def observation(self, now: float) -> LinkObservation:
        cap = self.capacity[0] if self.capacity and now - self.capacity[1] < self.capacity_timeout else None
        window = 2.0
        while self.sent and self.sent[0] < now - window:
            self.sent.popleft()
        st = self.status
        warm = self.first_sent is not None and now - self.first_sent > 2 * window  # both rate windows full
        obs = LinkObservation(capacity_bps=cap, sent_fps=len(self.sent) / window if warm else None,
                              stale=st is not None and now - self.status_time > self.status_timeout)
        if st is not None and not obs.stale:
            obs.loss_rate, obs.throughput_bps = st.loss_rate, st.throughput_bps
            obs.latency_ms = st.latency_ms or None
            # a decoder that has just started counts a partly empty window: its rate is no shortfall yet
            if now - self.first_status > 2 * window:
                obs.delivered_fps = st.fps
        return obs

    # ---- decisions ---------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        if not self._setting_read:  # decisions start from the encoder's setting: read it first
            self._read_encoder()
            return
        if self._inflight is not None and not self._wait_for_answer(now):
            return  # one request at a time: the next decision starts from its outcome
        if self._paused and not self.policy.held(now):
            self._paused = False
            self.get_logger().info(f"automatic switching resumed from width {self.policy.width:g}")
        obs = self.observation(now)
        if self.status is None and obs.capacity_bps is None:
            return  # no report from the decoder yet (it may still be loading): nothing has been lost
        if self.status is self._judged and not obs.stale and obs.capacity_bps is None:
            return  # judge each link report once: the same congested report must not back off twice
        self._judged = self.status
        d = self.policy.decide(now, obs)
        if self.policy.auto and d != self.policy.actual:
            self._set(now, d, self.policy.last_reason)

    def _set(self, now: float, d: Decision, why: str) -> None:
        if not self.params.services_are_ready():
            self.get_logger().warning(f"{self.encoder_fqn} parameter services not available; width stays",
                                      throttle_duration_sec=5.0)
            self.policy.request_done(now, d, False, False)
            return
        rate = self.policy.max_rate_hz(d.rate_hz)  # 0 = every camera frame
        self.switches += 1
        self.get_logger().info(f"width -> {d.width}, max_rate_hz -> {rate:g} ({why})")
        self.policy.requested(d)
        future = self.params.set_parameters([Parameter("width", Parameter.Type.DOUBLE, float(d.width)),
                                             Parameter("max_rate_hz", Parameter.Type.DOUBLE, float(rate))])
        self._inflight = (future, now, d)

    def _wait_for_answer(self, now: float) -> bool:
        """True once the request in flight is answered (or given up on); its outcome goes to the policy."""
        future, sent, d = self._inflight
        if not future.done():
            if now - sent < SET_TIMEOUT_S:
                return False
            future.cancel()
            self.get_logger().error(f"{self.encoder_fqn} did not answer set_parameters in {SET_TIMEOUT_S:g} s; "
                                    f"staying at width {self.policy.actual.width:g}")
            self.policy.request_done(now, d, False, False)
        else:
            results = list(future.result().results) if future.result() is not None else []
            ok = [r.successful for r in results] if len(results) == len(ENCODER_PARAMS) else [False, False]
            for name, r in zip(ENCODER_PARAMS, results):
                if not r.successful:
                    self.get_logger().error(f"{self.encoder_fqn} refused {name}: {r.reason}")
            self.policy.request_done(now, d, *ok)
            if not all(ok):
                self.get_logger().error(f"staying at width {self.policy.actual.width:g}, max_rate_hz "
                                        f"{self.policy.max_rate_hz(self.policy.actual.rate_hz):g}")
        self._inflight = None
        return True

    def close(self) -> None:
        actual = self.policy.actual
        setting = (f"at width {actual.width:g}, max_rate_hz {self.policy.max_rate_hz(actual.rate_hz):g}" if actual
                   else "never seen")
        self.get_logger().info(f"{self.reports} link reports, {self.switches} width/rate requests; "
                               f"{self.encoder_fqn} {setting}")


def main(args=None) -> int:
    return run_node(LinkMonitorNode, args)
