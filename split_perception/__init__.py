"""split_perception: split computing with learned, entropy-coded, slimmable feature compression."""

__version__ = "0.1.0"
