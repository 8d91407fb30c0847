"""A transformers causal LM whose weights stay on disk until the module that owns them runs.

Why: reference logits for an artifact written from the checkpoint need the source framework's own
forward, but not the whole model in memory. The model is built from its config with every parameter on torch's ``meta``
device (buffers such as rotary frequencies stay real); a forward pre-hook on each module that owns
parameters reads just those tensors from the checkpoint's safetensors as float32 (positioned reads,
``forgeml.formats.safetensors_rows``) and a forward hook drops them again. Peak memory is one tensor
(the embedding, typically) instead of the model, the arithmetic is transformers' own code in
float32 (what ``from_pretrained(dtype=float32)`` computes, without a float32 copy of the model), and
a checkpoint larger than RAM still gets its reference. The price is reading the weights once per
forward call (from the page cache after the first), overlapped with the compute: the next module's
weights are read on a helper thread while the current one runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from forgeml.errors import InputError


def streamed_model(checkpoint: Path, weight_fn=None):
    """The checkpoint's causal LM with meta parameters that load themselves around each module's forward.
    ``weight_fn(name, float32 array) -> array``, when given, changes each tensor as it is read (the
    noise-floor reference runs on the values a quantized file stores: ``hf_child``)."""
    import torch
    import transformers

    from forgeml.formats.hf_checkpoint import safetensors_files
    from forgeml.formats.safetensors_rows import SafetensorsSource

    source = SafetensorsSource(safetensors_files(checkpoint))
    stored = set(source.names())
    config = transformers.AutoConfig.from_pretrained(str(checkpoint), local_files_only=True)
    with _parameters_on_meta(torch):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    by_param: dict[int, list[str]] = {}  # tied parameters: one object, several names
    for name, p in model.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(p), []).append(name)

    def stored_name(name: str, p) -> str:
        for n in [name, *by_param.get(id(p), [])]:
            for cand in (n, n.removeprefix(prefix)):
                if cand in stored:
                    return cand
        raise InputError(f"{checkpoint}: the checkpoint has no tensor {name} (nor any tensor tied to it)")

    plans = []
    for mod_name, module in model.named_modules(remove_duplicate=False):
        own = [(pn, p) for pn, p in module._parameters.items() if p is not None]
        if not own:
            continue
        plan = [(pn, stored_name(f"{mod_name}.{pn}" if mod_name else pn, p), p) for pn, p in own]
        for _, name, p in plan:
            if tuple(source.shape(name)) != tuple(p.shape):
                raise InputError(f"{checkpoint}: tensor {name} has shape {tuple(source.shape(name))}, config.json "
                                 f"says {tuple(p.shape)}")
        plans.append(plan)
    reader = _Prefetch(source, [[name for _, name, _ in plan] for plan in plans], weight_fn)
    model.register_forward_pre_hook(lambda module, args: reader.begin())
    model.register_forward_hook(lambda module, args, output: reader.end())
    k = 0
    for _, module in model.named_modules(remove_duplicate=False):
        if any(p is not None for p in module._parameters.values()):
            module.register_forward_pre_hook(_loader(torch, reader, k, plans[k]))
            module.register_forward_hook(_dropper(plans[k]))
            k += 1
    missing = [n for n, b in model.named_buffers() if b.is_meta]
    if missing:
        raise InputError(f"{checkpoint}: buffers {missing[:3]} have no values without loading the whole model")
    return model


def _as_float32(source, name: str):
    """The tensor as a float32 torch tensor: 16-bit ones read as stored and widened by torch (vectorized;
    numpy's float16 -> float32 cast took twice the forward's own matmul time on a 1 GB model)."""
    import numpy as np
    import torch

    stored = source.stored_dtype(name)
    if stored not in ("F16", "BF16") or not source.shape(name):
        return torch.from_numpy(source.get(name))
    raw = source.get_rows_stored(name)
    if stored == "F16":
        return torch.from_numpy(raw).float()
    return torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16).float()


def _loader(torch, reader, k: int, plan):
    def pre(module, args):
        for (pn, _, _), array in zip(plan, reader.take(k)):
            t = array if isinstance(array, torch.Tensor) else torch.from_numpy(array)
            module._parameters[pn] = torch.nn.Parameter(t, requires_grad=False)
    return pre


class _Prefetch:
    """Reads the weights of the module expected next on a helper thread while the current one computes
    (the read and float32 conversion release the GIL). The order is learned from the forward itself:
    after module ``k`` ran, the module that ran next is expected next time (registration order until
    then). At most one module's weights wait beside the running module's, and none outside a forward:
    the module that ended the last forward prefetches nothing, and the end of a forward drops (and waits
    for) any prefetch still pending, so a forward reads each tensor once, whatever the threads' timing,
    and nothing is held or read between calls."""

    def __init__(self, source, names: list[list[str]], weight_fn=None):
        from concurrent.futures import ThreadPoolExecutor

        self.source, self.names, self.weight_fn = source, names, weight_fn
        self.next_of: dict[int, int] = {}
        self.last: int | None = None
        self.final: int | None = None  # the module that ran last in the previous forward
        self.pending: tuple[int, object] | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forgeml-weights")

    def _read(self, k: int) -> list:
        if self.weight_fn is not None:
            return [self.weight_fn(name, self.source.get(name)) for name in self.names[k]]
        return [_as_float32(self.source, name) for name in self.names[k]]

    def begin(self) -> None:
        """A forward starts: no order link from the previous forward's last module to this one's first."""
        self._drop()
        self.last = None

    def end(self) -> None:
        self._drop()
        self.final = self.last

    def _drop(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None and not pending[1].cancel():
            with contextlib.suppress(Exception):
                pending[1].result()

    def take(self, k: int) -> list:
        if self.last is not None:
            self.next_of[self.last] = k
        self.last = k
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] == k:
            arrays = pending[1].result()
        else:
            if pending is not None:
                pending[1].cancel()
            arrays = self._read(k)
        nxt = self.next_of.get(k, k + 1)
        if k != self.final and nxt < len(self.names):
            self.pending = (nxt, self.pool.submit(self._read, nxt))
        return arrays


def _dropper(plan):
    def post(module, args, output):
        for pn, _, meta in plan:
            module._parameters[pn] = meta
    return post


@contextlib.contextmanager
def _parameters_on_meta(torch):
    """Every parameter registered inside goes to the meta device at once (buffers stay real)."""
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=False)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


class StreamedReference:
    """The reference runner of a streamed model: ``run_many`` evaluates input sets of one shape in a single
    forward, so the weights are read from disk once for all of them, not once per set."""

    def __init__(self, runner):
        self.runner = runner

    def __call__(self, inputs):
        return self.runner(inputs)

    def run_many(self, input_sets: list) -> list[dict]:
        import numpy as np

        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(input_sets):
            groups.setdefault(tuple((k, v.shape, str(v.dtype)) for k, v in s.items()), []).append(i)
        out: list = [None] * len(input_sets)
        for idx in groups.values():
            joined = {k: np.concatenate([input_sets[i][k] for i in idx]) for k in input_sets[idx[0]]}
            res = self.runner(joined)
            at = 0
            for i in idx:
                n = len(next(iter(input_sets[i].values())))
                out[i] = {k: v[at:at + n] for k, v in res.items()}
                at += n
        return out

    def latency(self, inputs) -> dict:
        return {"note": "the reference reads its weights from disk on every call (streamed): its time is not "
                        "a latency, so none is measured"}
