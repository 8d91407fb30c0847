"""Runners: execute a model or artifact in a real runtime (onnxruntime, torch eager) and time it.

A runner is ``Callable[[InputSet], dict[str, ndarray]]`` using the source model's names and layouts
(the aliases live in ``forgeml.ir``, the contract every layer shares).
"""

from __future__ import annotations

from forgeml.ir import InputSet, Runner  # noqa: F401  (re-exported)
