"""Runners (one per runtime), metrics, tolerance profiles, parity and report writers."""

from __future__ import annotations

from typing import Callable

import numpy as np

InputSet = dict[str, np.ndarray]
Runner = Callable[[InputSet], dict[str, np.ndarray]]
"""Runs a model: input arrays by the source model's input names -> outputs by its output names."""
