"""Bytes: the packet wire format, the symbol rule and the context-adaptive rANS coder (numpy, no torch)."""
