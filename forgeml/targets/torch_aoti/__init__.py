"""torch-aoti: the torch source compiled ahead of time by AOTInductor into a ``.pt2`` package."""

from forgeml.targets.torch_aoti.target import TorchAOTITarget  # noqa: F401
