"""Schedule pass: a deterministic topological order of the (fused) nodes.

Ties keep the frontend's order, so the same model always gets the same schedule (and byte-identical
C). The planner's lifetimes are positions in this order.
"""

from __future__ import annotations

from mcuformer.codegen.ir import Graph, IRError, Node


def schedule(graph: Graph) -> Graph:
    produced_by = {out: i for i, node in enumerate(graph.nodes) for out in node.outputs + node.workspace}
    remaining = list(range(len(graph.nodes)))
    ready_tensors = set(graph.inputs)
    order: list[Node] = []
    while remaining:
        for pos, index in enumerate(remaining):
            node = graph.nodes[index]
            if all(name in ready_tensors or name not in produced_by for name in node.inputs):
                order.append(node)
                ready_tensors.update(node.outputs + node.workspace)
                del remaining[pos]
                break
        else:
            raise IRError(
                "graph has a cycle: no schedulable node among " + ", ".join(graph.nodes[i].name for i in remaining)
            )
    return graph.with_nodes(tuple(order))
