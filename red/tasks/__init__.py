"""Tasks: what a federation learns. `digits` (scikit-learn's bundled 8x8 digits) is built in."""

from red.registry import tasks
from red.tasks.base import Task, TrainResult

register = tasks.register

__all__ = ["Task", "TrainResult", "register"]
