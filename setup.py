"""Shim for tools that expect a setup.py (colcon's Python package discovery, `pip install -e` on old pips).

All configuration is in pyproject.toml.
"""

from setuptools import setup

setup()
