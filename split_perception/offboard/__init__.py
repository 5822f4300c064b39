"""Offboard: packet bytes -> detections and masks, and drawing them."""
