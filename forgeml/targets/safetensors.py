"""safetensors: the source model's weights under the source framework's own parameter names.

Parity for this target loads the file back into the *source* model (in its own framework) and
compares its outputs with the original's, so a wrong name, dtype or transposition is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

from forgeml.errors import TargetError
from forgeml.fileio import write_bytes_atomic
from forgeml.targets import Artifact, TargetContext


class SafetensorsTarget:
    name = "safetensors"
    Config = None
    filename = "model.safetensors"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        from safetensors.numpy import save

        if ctx.weights is None:
            raise TargetError(f"safetensors: the {ir.provenance.kind} source has no named weights to write")
        tensors = ctx.weights.named()
        if not tensors:
            raise TargetError("safetensors: the source model has no weights")
        dtypes = sorted({str(a.dtype) for a in tensors.values()})
        metadata = {
            "format": "pt" if ir.provenance.kind == "torch" else ir.provenance.kind,
            "source": ir.provenance.ref,
            "source_sha256": ir.provenance.sha256,
            "framework": ctx.weights.framework,
            "dtype": dtypes[0] if len(dtypes) == 1 else "mixed:" + ",".join(dtypes),
            "shapes": json.dumps({k: list(v.shape) for k, v in sorted(tensors.items())}, separators=(",", ":")),
            "producer": f"forgeml {ctx.forgeml_version}",
        }
        try:
            data = save({k: v for k, v in tensors.items()}, metadata=metadata)
        except Exception as e:
            raise TargetError(f"safetensors: could not serialize the weights: {e}") from e
        path = out_dir / self.filename
        write_bytes_atomic(path, data)
        params = int(sum(a.size for a in tensors.values()))
        return Artifact(self.name, path, [path], runtime=f"{ctx.weights.framework} (weights loaded back)",
                        metadata={"tensors": len(tensors), "parameters": params})

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from safetensors.numpy import load_file

        weights = load_file(str(artifact.path))
        # The weights are the source's own, so judge by the source's precision: fp32 strict.
        return ctx.weights.runner_with(weights), "fp32"
