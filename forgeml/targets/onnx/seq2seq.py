"""An encoder-decoder's two files from the one IR graph that holds both (``ir.Seq2SeqSpec``).

The IR keeps encoder and decoder-with-past side by side so passes and parity treat both at once;
deployment wants them apart (Optimum's ``encoder_model.onnx`` and ``decoder_with_past_model.onnx``).
Each file keeps only the nodes its outputs need, every input its part declares, and the weights it
reads (a weight both read, such as T5's shared embedding, is in both). A part that needs an input of
the other part would be a wrong split: refused with one line, never written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.errors import TargetError


def _subgraph_inputs(node) -> list[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read, at any depth: outer-scope values they use."""
    import onnx

    names = []
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for n in g.node:
                names += list(n.input) + _subgraph_inputs(n)
    return names


def _rename(graph, old: str, new: str) -> None:
    for v in graph.input:
        if v.name == old:
            v.name = new
    for n in graph.node:
        n.input[:] = [new if x == old else x for x in n.input]
        for attr in n.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename(g, old, new)


def extract(proto, inputs: list[str], outputs: list[str], what: str, renames=()):
    """The part of ``proto`` from ``inputs`` to ``outputs`` as its own ModelProto, renamed as asked."""
    import onnx

    g = proto.graph
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    graph_inputs = {v.name: v for v in g.input}
    graph_outputs = {v.name: v for v in g.output}
    inits = {t.name: t for t in g.initializer}
    missing = [n for n in [*inputs, *outputs] if n not in graph_inputs and n not in graph_outputs]
    if missing:
        raise TargetError(f"onnx: the {what} needs {missing}, which the IR graph does not have")
    keep, seen, todo = set(), set(), list(outputs)
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        i = producer.get(name)
        if i is not None and i not in keep:
            keep.add(i)
            todo += list(g.node[i].input) + _subgraph_inputs(g.node[i])
    stray = sorted(n for n in seen if n in graph_inputs and n not in inputs and n not in inits)
    if stray:
        raise TargetError(f"onnx: the {what} would need {stray}, inputs of the other part; the IR graph does not "
                          "split into encoder and decoder")
    graph = onnx.helper.make_graph(
        [g.node[i] for i in sorted(keep)], f"{g.name}_{what.replace(' ', '_')}",
        [graph_inputs[n] for n in inputs], [graph_outputs[n] for n in outputs],
        initializer=[inits[n] for n in sorted(seen) if n in inits],
        value_info=[v for v in g.value_info if v.name in seen])
    model = onnx.helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version,
                                   producer_name=proto.producer_name, producer_version=proto.producer_version)
    model.functions.extend(proto.functions)
    model.metadata_props.extend(proto.metadata_props)
    for old, new in renames:
        _rename(model.graph, old, new)
    return model


def write_parts(model_proto, spec, out_dir: Path) -> tuple[Path, Path]:
    """``(encoder file, decoder file)`` written atomically into ``out_dir``."""
    from forgeml.fileio import write_bytes_atomic

    enc = extract(model_proto, list(spec.encoder_inputs), spec.encoder_outputs(), "encoder")
    dec = extract(model_proto, spec.decoder_inputs(), spec.decoder_outputs(), "decoder with past",
                  renames=spec.DECODER_RENAMES)
    enc_path, dec_path = out_dir / spec.ENCODER_FILE, out_dir / spec.DECODER_FILE
    write_bytes_atomic(enc_path, enc.SerializeToString())
    write_bytes_atomic(dec_path, dec.SerializeToString())
    return enc_path, dec_path


class Seq2SeqRunner:
    """The two files in onnxruntime behind the IR's names: a call runs both (tensor parity);
    ``encode`` and ``decode_step`` run one each (the generation loop: encoder once per input)."""

    def __init__(self, encoder, decoder, spec):
        self.encoder, self.decoder, self.spec = encoder, decoder, spec
        self._to_file = dict(spec.DECODER_RENAMES)

    def encode(self, inputs: dict) -> dict[str, np.ndarray]:
        return self.encoder({n: inputs[n] for n in self.spec.encoder_inputs})

    def decode_step(self, inputs: dict) -> dict[str, np.ndarray]:
        return self.decoder({self._to_file.get(n, n): inputs[n] for n in self.spec.decoder_inputs()})

    def __call__(self, inputs: dict) -> dict[str, np.ndarray]:
        out = {**self.encode(inputs), **self.decode_step(inputs)}
        return {n: out[n] for n in self.spec.output_names()}
