"""Thin rclpy nodes: topics, QoS, parameters and services around the ROS-free core."""
