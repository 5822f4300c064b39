"""Test and benchmark harness around the nodes: process launcher, probe, kill-and-restart, demo recorder.

Not nodes themselves (those are in `split_perception.ros`); they start and observe them.
"""
