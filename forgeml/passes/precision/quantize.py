"""int8 dynamic, int8 static (QDQ, calibrated) and int4 weight-only passes, on onnxruntime.quantization.

- ``int8-dynamic``: weights int8 (per channel), activations quantized at run time. Rewrites Gemm with a
  constant weight into MatMul + Add first (onnxruntime's dynamic quantizer only takes MatMul), then
  MatMul/Conv/Gather → DynamicQuantizeLinear + MatMulInteger/ConvInteger, embeddings to uint8.
  Only MatMuls with a constant weight are quantized (attention's activation×activation products
  stay float: they are the most sensitive and the least of the work).
- ``int8-static``: QDQ format, per-channel weights, activation ranges from calibration batches
  (min/max by default); Q/DQ pairs around Conv, MatMul (constant weight) and Gemm.
- ``int4``: MatMul weights to 4 bits in blocks along K (``MatMulNBits``), activations float.

Per-channel, reduce-range and the activation type follow the CPU (``forgeml.passes.precision.cpu_features``);
for int8-static they follow the runtime first (``forgeml.passes.precision.plan``: TensorRT takes only
symmetric signed int8 Q/DQ).
Each pass is judged against the float model it receives and keeps costly nodes in float until its
accuracy budget holds (``forgeml.passes.precision.fallback``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import PassError
from forgeml.passes.precision.base import BudgetConfig, PrecisionPass

log = logging.getLogger(__name__)


def _quant_types():
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


def _save(proto, path: Path) -> str:
    import onnx

    onnx.save_model(proto, str(path))
    return str(path)


def _load(path: Path):
    from forgeml.formats import onnx_file

    return onnx_file.load(Path(path))


CALIBRATION_THREADS = 1


def _calibration_threads(n: int = CALIBRATION_THREADS):
    """onnxruntime's calibrator opens its session with the default intra-op pool (one thread per core of
    whatever node runs the job), and a reduction split over a different number of threads can round
    differently, moving a min/max and so a scale's bits. Within the block it opens it with ``n`` threads,
    so the calibrated ranges (and the artifact's bytes) do not depend on the machine's or task's CPUs."""
    import contextlib

    @contextlib.contextmanager
    def pinned():
        import onnxruntime as ort
        from onnxruntime.quantization import calibrate

        original = calibrate.CalibraterBase.create_inference_session

        def create(self):
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            self.infer_session = ort.InferenceSession(self.augmented_model_path, sess_options=opts,
                                                      providers=self.execution_providers)

        calibrate.CalibraterBase.create_inference_session = create
        try:
            yield
        finally:
            calibrate.CalibraterBase.create_inference_session = original

    return pinned()


def _quiet_quantizer():
    """onnxruntime's quantizer logs advice through the root logger at WARNING; keep it at debug."""
    import contextlib

    @contextlib.contextmanager
    def quiet():
        root = logging.getLogger()
        level = root.level
        if not log.isEnabledFor(logging.DEBUG):
            root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            root.setLevel(level)

    return quiet()


def _cpu_choice(per_channel: bool | None, reduce_range: bool | None, activation_type: str | None):
    from forgeml.passes.precision.cpu_features import int8_settings

    s = int8_settings()
    return (s.per_channel if per_channel is None else per_channel,
            s.reduce_range if reduce_range is None else reduce_range,
            s.activation_type if activation_type is None else activation_type, s)


# --- int8 dynamic -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Int8DynamicConfig:
    op_types: tuple[str, ...] = ("MatMul", "Conv", "Gather", "Attention")
    per_channel: bool | None = None  # None: chosen for this CPU
    reduce_range: bool | None = None  # None: chosen for this CPU
    gemm_to_matmul: bool = True
    budget: BudgetConfig = BudgetConfig()


class _Int8Pass(PrecisionPass):
    """What both int8 modes share: they quantize the config's op types wherever a weight is constant."""

    def candidates(self, proto) -> list[str]:
        from forgeml.passes.graph_tools import weight_nodes

        return weight_nodes(proto, self.config.op_types)

    def no_candidates(self) -> str:
        return (f"the model has no {'/'.join(self.config.op_types)} node with a constant weight to quantize "
                "(its compute is in other operators, e.g. ai.onnx.ml ones); `quantize.mode` fp16 may still apply")


class Int8DynamicPass(_Int8Pass):
    name = "int8-dynamic"
    Config = Int8DynamicConfig
    precision = "int8"

    def settings(self) -> dict:
        per_channel, reduce_range, _, s = _cpu_choice(self.config.per_channel, self.config.reduce_range, None)
        return {"format": "QOperator (DynamicQuantizeLinear + MatMulInteger/ConvInteger)", "per_channel": per_channel,
                "reduce_range": reduce_range, "weight_type": "int8", "activation_type": "uint8 (dynamic)",
                "cpu": s.isa, "why": s.why}

    def build(self, proto, exclude: frozenset, scratch: Path):
        import onnx
        from onnxruntime.quantization import quantize_dynamic

        per_channel, reduce_range, _, _ = _cpu_choice(self.config.per_channel, self.config.reduce_range, None)
        src, dst = scratch / "float.onnx", scratch / "int8.onnx"
        _save(proto, src)
        nodes = [n for n in self.candidates(proto) if n not in exclude]
        try:
            with _quiet_quantizer():
                quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(self.config.op_types),
                                 per_channel=per_channel, reduce_range=reduce_range,
                                 weight_type=_quant_types()["int8"], nodes_to_quantize=nodes,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                                "MatMulConstBOnly": True})
        except Exception as e:
            raise PassError(f"int8-dynamic: onnxruntime's quantizer failed: {type(e).__name__}: {e}") from e
        return _load(dst)


# --- int8 static (QDQ) ------------------------------------------------------------------------

@dataclass(frozen=True)
class Int8StaticConfig:
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
    calibration: str = "user"  # "user": the `quantize.calibration` batches; "synthetic": seeded random (not representative)
    calibrate_method: str = "minmax"  # minmax | entropy | percentile
    max_calibration_batches: int = 64
    per_channel: bool | None = None
    reduce_range: bool | None = None
    activation_type: str | None = None  # "uint8" | "int8"; None: chosen for this CPU (ignored for tensorrt)
    runtime: str = "onnxruntime-cpu"  # who runs the QDQ model: "onnxruntime-cpu" | "tensorrt" (see precision.plan)
    budget: BudgetConfig = BudgetConfig()


class Int8StaticPass(_Int8Pass):
    name = "int8-static"
    Config = Int8StaticConfig
    precision = "int8"

    def judged_exactly(self) -> bool:
        from forgeml.passes.precision.plan import judged_exactly

        return judged_exactly(self.config.runtime)

    def calibration_batches(self) -> list:
        from forgeml.passes.precision.base import example_like

        if self.config.calibration not in ("user", "synthetic"):
            raise PassError(f"int8-static: calibration must be 'user' or 'synthetic', not {self.config.calibration!r}")
        if self._inputs is None:
            raise PassError("int8-static: no calibration data (run it in the pipeline with `quantize.calibration`, "
                            "or bind PassInputs with calibration batches)")
        n = self.config.max_calibration_batches
        if self.config.calibration == "synthetic":
            return example_like(self._inputs, n, seed_offset=5000)
        if not self._inputs.calibration:
            raise PassError("int8-static needs calibration data: give `quantize.calibration` data.npz (arrays keyed by input "
                            "name, first axis = samples), or `quantize.synthetic_calibration` to calibrate on random inputs")
        return list(self._inputs.calibration[:n])

    def budget_inputs(self, proto):
        """Inputs the ranges were not fitted to: held-out `quantize.calibration` batches (the user's distribution),
        plus always the example-like batches the pipeline's stage parity is drawn like, so a budget
        that holds here also holds in the verdict."""
        from forgeml.passes.precision.base import example_like

        n = self.budget_batches()
        if self._inputs is None:
            return super().budget_inputs(proto)
        held_out = list(self._inputs.calibration[self.config.max_calibration_batches:])[:n]
        return held_out + example_like(self._inputs, n, seed_offset=1000)

    def plan(self):
        from forgeml.passes.precision.plan import int8_static_plan

        try:
            return int8_static_plan(self.config.runtime, per_channel=self.config.per_channel,
                                    reduce_range=self.config.reduce_range, activation_type=self.config.activation_type)
        except ValueError as e:
            raise PassError(f"int8-static: {e}") from e

    def settings(self) -> dict:
        p = self.plan()
        return {"format": "QDQ", "per_channel": p.per_channel, "reduce_range": p.reduce_range,
                "weight_type": p.weight_type, "activation_type": p.activation_type,
                "calibrate_method": self.config.calibrate_method, "calibration": self.config.calibration,
                "cpu": p.cpu, "why": p.why, "plan": p.to_json()}

    def warnings(self) -> list[str]:
        if self.config.calibration == "synthetic":
            return ["int8-static was calibrated on synthetic random inputs (`quantize.synthetic_calibration`): the activation "
                    "ranges are NOT representative of real data; give `quantize.calibration` with real samples before release"]
        return []

    def build(self, proto, exclude: frozenset, scratch: Path):
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static

        plan = self.plan()
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        if self.config.calibrate_method not in methods:
            raise PassError(f"int8-static: unknown calibrate_method {self.config.calibrate_method!r}; "
                            f"use one of {sorted(methods)}")
        batches = self.calibration_batches()
        progress = self._inputs.progress

        class Reader(CalibrationDataReader):  # onnxruntime runs the model on each batch it hands out
            def __init__(self):
                self._it, self._n = iter(batches), 0

            def get_next(self):
                batch = next(self._it, None)
                if batch is not None and progress is not None:
                    self._n += 1
                    progress(self._n, len(batches))
                return batch

            def rewind(self):
                self._it, self._n = iter(batches), 0

        src, dst = scratch / "float.onnx", scratch / "int8-qdq.onnx"
        _save(proto, src)
        types = _quant_types()
        try:
            with _quiet_quantizer(), _calibration_threads():
                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(self.config.op_types), per_channel=plan.per_channel,
                                reduce_range=plan.reduce_range, activation_type=types[plan.activation_type],
                                weight_type=types[plan.weight_type], nodes_to_exclude=sorted(exclude),
                                calibrate_method=methods[self.config.calibrate_method],
                                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True,
                                               "ActivationSymmetric": plan.activation_symmetric,
                                               "WeightSymmetric": plan.weight_symmetric,
                                               "QuantizeBias": plan.quantize_bias})
        except PassError:
            raise
        except Exception as e:
            raise PassError(f"int8-static: onnxruntime's quantizer failed: {type(e).__name__}: {e}") from e
        return _load(dst)


# --- int4 weight-only -------------------------------------------------------------------------

@dataclass(frozen=True)
class Int4Config:
    block_size: int = 32  # weights per scale, along K
    symmetric: bool = True
    accuracy_level: int | None = None  # MatMulNBits compute: None chooses 4 (int8) on VNNI/ARM64, else 0
    gemm_to_matmul: bool = True
    budget: BudgetConfig = BudgetConfig()


class Int4Pass(PrecisionPass):
    name = "int4"
    Config = Int4Config
    precision = "int4"

    def candidates(self, proto) -> list[str]:
        import onnx

        from forgeml.passes.graph_tools import weight_nodes

        inits = {t.name: t for t in proto.graph.initializer}
        names = set(weight_nodes(proto, ["MatMul"]))
        out = []
        for n in proto.graph.node:
            if n.name in names:
                w = inits[n.input[1]]
                if len(w.dims) == 2 and w.data_type == onnx.TensorProto.FLOAT:
                    out.append(n.name)
        return out

    def no_candidates(self) -> str:
        return ("the model has no MatMul with a constant 2-D float weight: int4 weight-only quantization "
                "(MatMulNBits) is for transformer-style MatMuls; use `quantize.mode` int8 or int8-static instead")

    def _accuracy_level(self) -> int:
        from forgeml.passes.precision.cpu_features import detect

        if self.config.accuracy_level is not None:
            return self.config.accuracy_level
        f = detect()
        return 4 if (f.avx512_vnni or f.avx_vnni or f.arch == "arm64") else 0

    def settings(self) -> dict:
        from forgeml.passes.precision.cpu_features import detect

        return {"format": "MatMulNBits (com.microsoft)", "bits": 4, "block_size": self.config.block_size,
                "symmetric": self.config.symmetric, "accuracy_level": self._accuracy_level(), "cpu": detect().isa}

    def build(self, proto, exclude: frozenset, scratch: Path):
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        try:
            with _quiet_quantizer():
                q = MatMulNBitsQuantizer(copy, bits=4, block_size=self.config.block_size,
                                         is_symmetric=self.config.symmetric, accuracy_level=self._accuracy_level(),
                                         nodes_to_exclude=sorted(exclude), op_types_to_quantize=("MatMul",))
                q.process()
        except Exception as e:
            raise PassError(f"int4: onnxruntime's MatMulNBits quantizer failed: {type(e).__name__}: {e}") from e
        return q.model.model
