"""Integer parameters of fused nodes, assembled from the kernels of the primitive nodes they replace.

The fused C kernels run exactly the primitive kernels' arithmetic row by row, so a fused node's
parameters are its body's parameters, regrouped into the C struct of the fused kernel.
"""

from __future__ import annotations

from mcuformer.codegen import qparams as qp
from mcuformer.codegen.ir import Graph, IRError, Node, Op


def _lowrank(kernels: dict, role: str) -> qp.LowRankParams:
    if role in kernels:
        return qp.lowrank_params(kernels[role])
    return qp.lowrank_params(kernels[role + ".up"], kernels[role + ".down"])


def build_fused_kernel(node: Node, graph: Graph):
    k = {n.attrs.role: n.kernel for n in node.body}
    by_role = {n.attrs.role: n for n in node.body}
    if node.op == Op.FUSED_PATCH_EMBED:
        return k["proj"]
    if node.op == Op.FUSED_ATTENTION:
        tokens, dim = graph.tensors[by_role["ln"].inputs[0]].shape
        down = k.get("qkv_down")
        return qp.AttentionParams(
            tokens=tokens,
            dim=dim,
            heads=by_role["scores"].attrs.heads,
            ln=k["ln"],
            qkv_rank=down.out_features if down else 0,
            qkv_down=down if down else qp.LinearParams.empty(),
            q=k["q"],
            k=k["k"],
            v=k["v"],
            head=qp.merge_attn_head(k["scores"], k["av"]),
            softmax=k["softmax"],
            proj=k["proj"],
            residual=k["residual"],
            tile=node.tile,
        )
    if node.op == Op.FUSED_MLP:
        tokens, dim = graph.tensors[by_role["ln"].inputs[0]].shape
        return qp.MLPParams(
            tokens=tokens,
            dim=dim,
            hidden=graph.tensors[by_role["gelu"].inputs[0]].shape[1],
            ln=k["ln"],
            fc1=_lowrank(k, "fc1"),
            gelu_table=k["gelu"],
            fc2=_lowrank(k, "fc2"),
            residual=k["residual"],
            tile=node.tile,
        )
    if node.op == Op.FUSED_POOL_HEAD:
        tokens, dim = graph.tensors[by_role["ln"].inputs[0]].shape
        pool = k["pool"]
        return qp.PoolHeadParams(
            tokens=tokens,
            dim=dim,
            classes=k["classifier"].out_features,
            ln=k["ln"],
            pool_input_offset=pool.input_offset,
            pool_output_offset=pool.output_offset,
            pool=pool.requant,
            head=k["classifier"],
        )
    if node.op == Op.FUSED_TOKEN_HEAD:
        tokens, dim = graph.tensors[by_role["ln"].inputs[0]].shape
        return qp.TokenHeadParams(
            tokens=tokens,
            dim=dim,
            classes=k["classifier"].out_features,
            readout=k["readout"].rows,
            ln=k["ln"],
            head=k["classifier"],
        )
    if node.op == Op.FUSED_POOL_NORM_HEAD:
        tokens, dim = graph.tensors[by_role["pool"].inputs[0]].shape
        pool = k["pool"]
        return qp.PoolNormHeadParams(
            tokens=tokens,
            first_token=by_role["pool"].attrs.first_token,
            dim=dim,
            classes=k["classifier"].out_features,
            pool_input_offset=pool.input_offset,
            pool_output_offset=pool.output_offset,
            pool=pool.requant,
            ln=k["ln"],
            head=k["classifier"],
        )
    raise IRError(f"{node.name}: no fused kernel for {node.op}")
