"""CompressAI's rANS coder (its C++ extension `compressai.ans`) without importing torch.

`import compressai.ans` runs `compressai/__init__.py`, which imports torch; the extension itself
links only the C++ runtime, so the onboard side loads the module file directly (the context coder,
`codec/context.py`, codes with it on both sides).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

from ..errors import ConfigError

_NAME = "compressai.ans"


def ans_module():
    """The loaded `compressai.ans` extension (shared with CompressAI when it is imported too)."""
    if _NAME in sys.modules:  # one copy per process: a second load would register its types twice
        return sys.modules[_NAME]
    spec = importlib.util.find_spec("compressai")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("compressai is not installed (the onboard coder is its `ans` extension)")
    files = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("ans.*")
                   if p.suffix in (".so", ".pyd"))
    if not files:
        raise ConfigError(f"compressai's `ans` extension not found in {spec.submodule_search_locations}")
    loader = importlib.machinery.ExtensionFileLoader(_NAME, str(files[0]))
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(_NAME, files[0], loader=loader))
    loader.exec_module(module)
    sys.modules[_NAME] = module
    return module

