"""tf2onnx made deterministic: the same TensorFlow graph gives the same ONNX bytes in every process.

Two things in tf2onnx 1.17 vary from run to run. Its graph keeps the nodes that survive
``delete_unused_nodes`` in the order of a ``set`` of node objects, which hash by memory address; the
optimizers that follow (transpose push-down, constant folding, merging duplicates) walk that order,
so which transposes become reshapes, which constants get folded first and what their
``const_fold_opt__N`` names are changes with the allocator. And every name it makes
(``make_name``) takes the next number of a process-wide counter, so a second conversion in one
process (``forgeml batch --cluster none``) numbers from where the first stopped, and string sets
iterated in hash-seed order (the back-to-back optimizer) draw numbers in a different order.

``deterministic()`` fixes the first at its root (the survivors keep the graph's own order) and starts
the counter afresh; ``renumber()`` then numbers tf2onnx's names by where they first appear in the
final graph, which removes whatever drawing order is left.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

_MADE = re.compile(r"^(.*)__(\d+)(:\d+)?$")  # tf2onnx's make_name: PREFIX__N, plus :K on an output


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Within the block, tf2onnx's unused-node removal keeps graph order and its name counter starts at 1."""
    from tf2onnx import graph, utils

    original = graph.Graph.extract_sub_graph_nodes

    def in_graph_order(self, outputs_name, input_checker=None, remove_unused_inputs=True):
        keep = set(original(self, outputs_name, input_checker, remove_unused_inputs))
        ordered = [n for n in self.get_nodes() if n in keep]
        seen = set(ordered)
        return ordered + sorted((n for n in keep if n not in seen), key=lambda n: n.name)

    graph.Graph.extract_sub_graph_nodes = in_graph_order
    utils.INTERNAL_NAME = 1
    try:
        yield
    finally:
        graph.Graph.extract_sub_graph_nodes = original


def renumber(proto) -> None:
    """Rename ``PREFIX__N`` names (not the graph's inputs and outputs) to ``PREFIX__K``, K counting from 1
    in the order the numbers first appear walking the nodes; refused (left as is) if a new name would
    collide with a name already there."""
    graphs = list(_graphs(proto.graph))
    keep = {v.name for v in proto.graph.input} | {v.name for v in proto.graph.output}
    names: list[str] = []
    for g in graphs:
        for n in g.node:
            names += [n.name, *n.input, *n.output]
    for g in graphs:  # then what no node names: unused initializers, a body graph's own inputs and outputs
        names += [t.name for t in g.initializer]
        if g is not proto.graph:
            names += [v.name for v in (*g.input, *g.output)]
    numbers: dict[str, int] = {}
    for name in names:
        m = _MADE.match(name)
        if m and name not in keep and m.group(2) not in numbers:
            numbers[m.group(2)] = len(numbers) + 1
    if not numbers:
        return

    def new(name: str) -> str:
        m = _MADE.match(name)
        if not m or name in keep or m.group(2) not in numbers:
            return name
        return f"{m.group(1)}__{numbers[m.group(2)]}{m.group(3) or ''}"

    old = set(names)
    mapping = {n: new(n) for n in old}
    renamed = {v for k, v in mapping.items() if k != v}
    if len(set(mapping.values())) != len(mapping) or renamed & (old - {k for k, v in mapping.items() if k != v}):
        return  # a graph that already used such names: leave it rather than merge two tensors
    for g in graphs:
        for t in g.initializer:
            t.name = mapping[t.name]
        for v in (*g.value_info, *((*g.input, *g.output) if g is not proto.graph else ())):
            v.name = mapping.get(v.name, v.name)
        for n in g.node:
            n.name = mapping[n.name]
            n.input[:] = [mapping[i] for i in n.input]
            n.output[:] = [mapping[o] for o in n.output]


def _graphs(g):
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.g.node or a.g.initializer:
                yield from _graphs(a.g)
            for sub in a.graphs:
                yield from _graphs(sub)
