"""The op definitions: one file per op, each registering one definition (codegen.ops.base).

Importing this package registers the built-in ops and gives the registry's lookups; an op of one's
own registers itself when its file is imported (see tests/toy_op.py)."""

from mcuformer.codegen.ops import (  # noqa: E402, F401, I001  (each module registers its op)
    add,
    attn_av,
    attn_scores,
    conv2d,
    fused_attention,
    fused_mlp,
    fused_patch_embed,
    fused_pool_head,
    fused_pool_norm_head,
    fused_token_head,
    gelu,
    layernorm,
    linear,
    mean_pool,
    patch_embed,
    readout,
    softmax,
)
from mcuformer.codegen.ops.base import (
    OP_FEATURES,
    CallContext,
    FusedOp,
    PrimitiveOp,
    Step,
    array_bytes,
    by_role,
    constant_bytes,
    fused,
    match_fused,
    node_features,
    primitive,
    register,
)

__all__ = [
    "OP_FEATURES",
    "CallContext",
    "FusedOp",
    "PrimitiveOp",
    "Step",
    "array_bytes",
    "by_role",
    "constant_bytes",
    "fused",
    "match_fused",
    "node_features",
    "primitive",
    "register",
]
