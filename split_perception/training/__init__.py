"""Two-stage training: teacher, then the slimmable student by distillation + rate."""
