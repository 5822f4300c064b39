"""Test and benchmark harness around the nodes: process launcher, probe, kill-and-restart, demo recorder,
and a real constrained link between network namespaces.

Not nodes themselves (those are in `split_perception.ros`); they start and observe them.
"""
