"""Link quality: statistics from arrivals, bandwidth traces, token bucket, width policy (no ROS)."""
