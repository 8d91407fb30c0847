"""What the ONNX-TensorRT parser accepts: operators, the data types each takes, and the dtypes at all.

This is data, kept apart from the rules that read it (``trt_readiness``). Facts are from the
onnx/onnx-tensorrt repository (the parser TensorRT itself ships), written here in our own form:

* ``"10.1"``: ``docs/operators.md`` at the TensorRT 10.1 GA release, commit
  96e781103cfc4adf4a6bb557e94bac8e693f6f4c (2024-06-17), "Operator Support Matrix": opsets 9 to 20;
  data types DOUBLE (cast down to FLOAT), FLOAT, FLOAT16, BFLOAT16, INT32, INT64, FP8, INT8, INT4,
  UINT8, BOOL; INT8/INT4/FP8 only through quantization (Q/DQ); UINT8 only as network input/output.
  ``docs/Changelog.md`` (9.0 EA): INT64 became a native type, "the ONNX parser no longer automatically
  casts INT64 to INT32". The parser rejects opsets below 7 (``ModelImporter.cpp``).
* ``"8.5"``: ``docs/operators.md`` at commit 6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc (TensorRT 8.5,
  opsets up to 17): data types DOUBLE, FLOAT, FLOAT16, INT8, BOOL, with limited INT32/INT64 support:
  INT64 is cast down to INT32 and DOUBLE to FLOAT, values clamped to the narrower range.

Unknown ONNX operators (newer than the matrix) count as unsupported. Type tokens in the tables:
``f`` FLOAT+FLOAT16+BFLOAT16, ``h`` FLOAT+FLOAT16, ``f32`` FLOAT only, then ``i32 i64 i8 i4 u8 fp8 bool``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOURCE = "onnx/onnx-tensorrt docs/operators.md"

_TOKENS = {
    "f": ("FLOAT", "FLOAT16", "BFLOAT16"),
    "h": ("FLOAT", "FLOAT16"),
    "f32": ("FLOAT",),
    "i32": ("INT32",),
    "i64": ("INT64",),
    "i8": ("INT8",),
    "i4": ("INT4",),
    "u8": ("UINT8",),
    "fp8": ("FLOAT8E4M3FN",),
    "bool": ("BOOL",),
}

_REDUCE = ("ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd "
           "ReduceSum ReduceSumSquare").split()

# TensorRT 10.1: one operator per line, then the types its data input may have.
_OPS_10_1 = """
Abs f i32 i64 | Acos f | Acosh f | Add f i32 i64 | And bool | ArgMax f i32 i64 | ArgMin f i32 i64
Asin f | Asinh f | Atan f | Atanh f | AveragePool f | BatchNormalization f
Cast f i32 i64 u8 bool | CastLike f i32 i64 u8 bool | Ceil f | Celu f | Clip f | Concat f i32 i64 bool
Constant f i32 i64 bool | ConstantOfShape f i32 i64 bool | Conv f | ConvTranspose f | Cos f | Cosh f
CumSum f | DeformConv h | DepthToSpace f i32 i64 | DequantizeLinear i8 fp8 i4 | Div f i32 i64 | Dropout f
Einsum f | Elu f | Equal f i32 i64 | Erf f | Exp f | Expand f i32 i64 bool | EyeLike f i32 i64 bool
Flatten f i32 i64 bool | Floor f | Gather f i32 i64 bool | GatherElements f i32 i64 bool
GatherND f i32 i64 bool | Gelu f i8 i32 i64 | Gemm f | GlobalAveragePool f | GlobalLpPool f
GlobalMaxPool f | Greater f i32 i64 | GreaterOrEqual f i32 i64 | GridSample h | GroupNormalization f
GRU f | HardSigmoid f | HardSwish f | Hardmax f | Identity f i32 i64 bool | If f i32 i64 bool
ImageScaler f | InstanceNormalization f | IsInf f | IsNaN f i32 i64 | LayerNormalization f | LeakyRelu f
Less f i32 i64 | LessOrEqual f i32 i64 | Log f | LogSoftmax f | Loop f i32 i64 bool | LRN f | LSTM f
LpNormalization f | LpPool f | MatMul f | Max f i32 i64 | MaxPool f | Mean f fp8 i32 i64
MeanVarianceNormalization f | Min f i32 i64 | Mish h | Mod f i32 i64 | Mul f i32 i64 | Neg f i32 i64
NonMaxSuppression h | NonZero h | Not bool | OneHot f i32 i64 bool | Or bool | Pad f i32 i64
ParametricSoftplus f | Pow f | PRelu f | QuantizeLinear f | RandomNormal f | RandomNormalLike f
RandomUniform f | RandomUniformLike f | Range f i32 i64 | Reciprocal f | Relu f i32 i64
Reshape f i32 i64 bool | Resize f | ReverseSequence f i32 i64 bool | RNN f | RoiAlign h | Round f
ScaledTanh f | Scan f | Scatter f i32 i64 | ScatterElements f i32 i64 | ScatterND f i32 i64 | Selu f
Shape f i32 i64 bool | Shrink f i32 i64 | Sigmoid f | Sign f i32 i64 | Sin f | Sinh f
Size f i32 i64 bool | Slice f i32 i64 bool | Softmax f | Softplus f | Softsign f | SpaceToDepth f i32 i64
Split f i32 i64 bool | Sqrt f | Squeeze f i32 i64 bool | Sub f i32 i64 | Sum f i32 i64 | Tan f | Tanh f
ThresholdedRelu f | Tile f i32 i64 bool | TopK f i32 i64 | Transpose f i32 i64 bool
Trilu f i32 i64 bool | Unsqueeze f i32 i64 bool | Upsample f | Where f i32 i64 bool | Xor bool
""" + " | ".join(f"{op} f i32 i64" for op in _REDUCE)

_NOT_10_1 = """AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Col2Im
CenterCropPad Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear HammingWindow HannWindow
ImageDecoder MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss
Optional OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch STFT SequenceAt
SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique"""

# TensorRT 8.5 (INT64 is cast to INT32 first, so an op listing i32 takes INT64 too).
_OPS_8_5 = """
Abs h i32 | Acos h | Acosh h | Add h i32 | And bool | ArgMax h | ArgMin h | Asin h | Asinh h | Atan h
Atanh h | AveragePool h i8 i32 | BatchNormalization h | Cast h i32 i8 bool | Ceil h | Celu h | Clip h i8
Concat h i32 i8 bool | Constant h i32 i8 bool | ConstantOfShape f32 | Conv h i8 | ConvTranspose h i8
Cos h | Cosh h | CumSum h | DepthToSpace h i32 | DequantizeLinear i8 | Div h i32 | Dropout h | Einsum h
Elu h i8 | Equal h i32 | Erf h | Exp h | Expand h i32 bool | EyeLike h i32 bool | Flatten h i32 bool
Floor h | Gather h i8 i32 bool | GatherElements h i8 i32 bool | GatherND h i8 i32 bool | Gemm h i8
GlobalAveragePool h i8 | GlobalLpPool h i8 | GlobalMaxPool h i8 | Greater h i32 | GreaterOrEqual h i32
GridSample h | GRU h | HardSwish h i8 | HardSigmoid h i8 | Identity h i32 i8 bool | If h i32 bool
ImageScaler h | InstanceNormalization h | IsNaN h i32 | LeakyRelu h i8 | Less h i32 | LessOrEqual h i32
Log h | LogSoftmax h | Loop h i32 bool | LRN h | LSTM h | LpNormalization h | LpPool h i8 | MatMul h
Max h i32 | MaxPool h i8 | Mean h i32 | MeanVarianceNormalization h | Min h i32 | Mod h i32 | Mul h i32
Neg h i32 | NonMaxSuppression h | NonZero h | Not bool | OneHot h i32 bool | Or bool | Pad h i8 i32
ParametricSoftplus h i8 | Pow h | PRelu h i8 | QuantizeLinear h | RandomNormal h | RandomNormalLike h
RandomUniform h | RandomUniformLike h | Range h i32 | Reciprocal h | Relu h i8 | Reshape h i32 i8 bool
Resize h | ReverseSequence h | RNN h | RoiAlign h | Round h i8 | ScaledTanh h i8 | Scan h
Scatter h i8 i32 | ScatterElements h i8 i32 | ScatterND h i8 i32 | Selu h i8 | Shape h i32 i8 bool
Shrink h i32 | Sigmoid h i8 | Sign h i8 i32 | Sin h | Sinh h | Size h i32 i8 bool | Slice h i32 i8 bool
Softmax h | Softplus h i8 | Softsign h i8 | SpaceToDepth h i32 | Split h i32 bool | Sqrt h
Squeeze h i32 i8 bool | Sub h i32 | Sum h i32 | Tan h | Tanh h i8 | ThresholdedRelu h i8 | Tile h i32 bool
TopK h | Transpose h i32 i8 bool | Trilu h i32 i8 bool | Unsqueeze h i32 i8 bool | Upsample h
Where h i32 bool | Xor bool
""" + " | ".join(f"{op} h" for op in _REDUCE)

_NOT_8_5 = """Bernoulli BitShift BlackmanWindow Compress ConcatFromSequence ConvInteger DFT Det
DynamicQuantizeLinear HammingWindow HannWindow Hardmax IsInf LayerNormalization MatMulInteger MaxRoiPool
MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
OptionalHasElement QLinearConv QLinearMatMul STFT SequenceAt SequenceConstruct SequenceEmpty SequenceErase
SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringNormalizer
TfIdfVectorizer Unique"""


# ONNX ops the parser imports through a TensorRT plugin rather than a native layer
# (``builtin_op_importers.cpp``: RoiAlign creates "ROIAlign_TRT").
_PLUGIN_OPS = {"RoiAlign": "ROIAlign_TRT"}


@dataclass(frozen=True)
class SupportTable:
    """One TensorRT release's view of ONNX: what the readiness rules check a model against."""

    version: str  # "10.1"
    source: str  # where the facts come from
    ops: dict[str, frozenset[str]]  # supported op -> ONNX dtype names its data input may have
    unsupported: frozenset[str]  # ops the matrix lists as not supported
    min_opset: int
    max_opset: int  # the newest opset the matrix covers (newer: a warning, not a verdict)
    native: frozenset[str]  # dtypes TensorRT holds as they are
    cast: dict[str, str]  # dtypes the parser casts down: dtype -> what it becomes
    quantized: frozenset[str]  # dtypes allowed only inside Q/DQ
    io_only: frozenset[str]  # dtypes allowed only as network inputs/outputs
    plugin_ops: dict[str, str] = field(default_factory=dict)  # ONNX op -> the TensorRT plugin the parser uses

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def _parse_ops(text: str) -> dict[str, frozenset[str]]:
    ops = {}
    for entry in text.replace("\n", " | ").split("|"):
        words = entry.split()
        if words:
            ops[words[0]] = frozenset(t for tok in words[1:] for t in _TOKENS[tok])
    return ops


TABLES: dict[str, SupportTable] = {
    "10.1": SupportTable(
        version="10.1",
        source=f"{SOURCE} @ 96e781103cfc4adf4a6bb557e94bac8e693f6f4c (TensorRT 10.1 GA)",
        ops=_parse_ops(_OPS_10_1), unsupported=frozenset(_NOT_10_1.split()),
        min_opset=7, max_opset=20,
        native=frozenset({"FLOAT", "FLOAT16", "BFLOAT16", "INT32", "INT64", "BOOL"}),
        cast={"DOUBLE": "FLOAT"},
        quantized=frozenset({"INT8", "INT4", "FLOAT8E4M3FN"}),
        io_only=frozenset({"UINT8"}),
        plugin_ops=dict(_PLUGIN_OPS),
    ),
    "8.5": SupportTable(
        version="8.5",
        source=f"{SOURCE} @ 6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc (TensorRT 8.5)",
        ops=_parse_ops(_OPS_8_5), unsupported=frozenset(_NOT_8_5.split()),
        min_opset=7, max_opset=17,
        native=frozenset({"FLOAT", "FLOAT16", "INT32", "BOOL"}),
        cast={"DOUBLE": "FLOAT", "INT64": "INT32"},
        quantized=frozenset({"INT8"}),
        io_only=frozenset(),
        plugin_ops=dict(_PLUGIN_OPS),
    ),
}
DEFAULT_TABLE = "10.1"
