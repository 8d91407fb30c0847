"""torch eager as a runner: executes the *original* module, the reference for torch sources."""

from __future__ import annotations

import numpy as np

from forgeml.errors import ConversionError
from forgeml.runtime import InputSet, Runner


def flatten_outputs(out, output_names: list[str]) -> dict[str, np.ndarray]:
    """Map whatever ``forward`` returned (tensor, tuple/list, dict) onto the output names."""
    import torch

    if isinstance(out, torch.Tensor):
        values = [out]
    elif isinstance(out, dict):
        values = list(out.values())
    elif isinstance(out, (tuple, list)):
        values = list(out)
    elif hasattr(out, "to_tuple"):  # transformers ModelOutput
        values = list(out.to_tuple())
    else:
        raise ConversionError(f"torch reference: cannot read model output of type {type(out).__name__}")
    if len(values) != len(output_names):
        raise ConversionError(
            f"torch reference: the model returned {len(values)} outputs but {len(output_names)} "
            f"names are known ({output_names})"
        )
    return {n: v.detach().cpu().numpy() for n, v in zip(output_names, values)}


def torch_runner(module, input_names: list[str], output_names: list[str]) -> Runner:
    """Run ``module`` in eval mode without autograd; inputs are passed positionally in signature order."""
    import torch

    def run(inputs: InputSet) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]
        with torch.inference_mode():
            out = module(*args)
        return flatten_outputs(out, output_names)

    return run
