"""Runners: execute a model or artifact in a real runtime (onnxruntime, torch eager) and time it.

A runner follows the ``Runner`` protocol: ``runner(inputs) -> outputs``, by the source model's names
and layouts (the protocol lives in ``forgeml.ir``, the contract every layer shares). A runner whose
calls do not execute the artifact in this process also follows ``SelfTimed``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from forgeml.ir import InputSet, Runner  # noqa: F401  (re-exported)


@runtime_checkable
class SelfTimed(Protocol):
    """A runner that serves outputs computed elsewhere (a fresh process, say) and so times itself:
    ``latency(inputs)`` gives the latency record, or one with a ``note`` saying why there is none."""

    def __call__(self, inputs: InputSet) -> dict: ...

    def latency(self, inputs: InputSet) -> dict: ...
