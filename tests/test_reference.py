"""The Python integer reference itself: row-wise fused kernels equal the unfused ops, and a full-size
layer runs fast enough to evaluate data sets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mcuformer.codegen import ref
from tests.kernel_cases import (
    assert_same,
    float_attention,
    float_mlp,
)


@pytest.mark.parametrize("seed", range(3))
def test_fused_equals_unfused(seed: int) -> None:
    rng = np.random.default_rng(1100 + seed)
    for tokens, dim, heads, rank in ((16, 32, 2, 0), (25, 48, 4, 12), (9, 24, 3, 0)):
        p, x = float_attention(rng, tokens, dim, heads, rank)
        assert_same(ref.attention_rowwise(p, x), ref.attention_unfused(p, x), f"attention T{tokens} E{dim}")
    for tokens, dim, hidden, rank in ((16, 32, 64, 0), (25, 48, 96, 6)):
        p, x = float_mlp(rng, tokens, dim, hidden, rank)
        assert_same(ref.mlp_rowwise(p, x), ref.mlp_unfused(p, x), f"mlp T{tokens} E{dim}")


def test_reference_speed_full_size_layer() -> None:
    """One T=144, E=216 layer (attention + MLP) runs row-wise in well under a second; fused == unfused."""
    rng = np.random.default_rng(1200)
    pa, x = float_attention(rng, 144, 216, 4, 32)
    pm, _ = float_mlp(rng, 144, 216, 864, 0)
    start = time.perf_counter()
    y = ref.mlp_rowwise(pm, ref.attention_rowwise(pa, x))
    elapsed = time.perf_counter() - start
    assert_same(y, ref.mlp_unfused(pm, ref.attention_unfused(pa, x)), "full-size layer")
    assert elapsed < 5.0, f"row-wise reference took {elapsed:.2f} s for one layer"
