"""Aggregation algorithms, one class each; the maths are in `red.aggregation`."""

from red.algorithms.base import Algorithm, Update
from red.registry import algorithms

register = algorithms.register

__all__ = ["Algorithm", "Update", "register"]
