"""torch eager as a runner: executes the *original* module, the reference for torch sources."""

from __future__ import annotations

import numpy as np

from forgeml.errors import ConversionError
from forgeml.runtime import InputSet


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


class TorchRunner:
    """The module in eval mode without autograd; inputs are passed positionally in signature order."""

    def __init__(self, module, input_names: list[str], output_names: list[str]):
        self.module, self.input_names, self.output_names = module, list(input_names), list(output_names)

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names]
        with torch.inference_mode():
            out = self.module(*args)
        return flatten_outputs(out, self.output_names)


def torch_runner(module, input_names: list[str], output_names: list[str]) -> TorchRunner:
    return TorchRunner(module, input_names, output_names)
