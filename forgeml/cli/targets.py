"""Per-target flags: each target's CLI options parsed into that target's typed config (the library
below never sees a flag)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from forgeml.errors import InputError
from forgeml.targets.tensorrt.target import TensorRTConfig, TrtProfile


def tensorrt_config(profiles: list[str], workspace_mib: int | None, timing_cache: Path | None,
                    plugins: list[str]) -> TensorRTConfig | None:
    """The CLI's --trt-* options as a config (None: all defaults)."""
    if not (profiles or workspace_mib or timing_cache or plugins):
        return None
    parsed = tuple(TrtProfile.parse(p) for p in profiles)
    names = [p.name for p in parsed]
    if len(set(names)) != len(names):
        raise InputError(f"--trt-profile: one profile per input, got {names}")
    cfg = TensorRTConfig(profiles=parsed, timing_cache=timing_cache, plugins=tuple(plugins))
    if workspace_mib:
        if workspace_mib <= 0:
            raise InputError("--trt-workspace must be a positive number of MiB")
        cfg = dataclasses.replace(cfg, workspace_mib=workspace_mib)
    return cfg


def gguf_config(gguf_type: str | None):
    """--gguf-type as the gguf target's config (None: its defaults)."""
    if not gguf_type:
        return None
    from forgeml.targets.gguf.target import Config

    return Config(type=gguf_type)


def triton_config(name: str | None, max_batch: int | None):
    """--triton-name / --triton-max-batch as the triton target's config (None: its defaults)."""
    if name is None and max_batch is None:
        return None
    from forgeml.targets.triton.target import TritonConfig

    if max_batch is not None and max_batch < 1:
        raise InputError(f"--triton-max-batch must be >= 1, not {max_batch}")
    cfg = TritonConfig(model_name=name)
    return cfg if max_batch is None else TritonConfig(model_name=name, max_batch_size=max_batch)
