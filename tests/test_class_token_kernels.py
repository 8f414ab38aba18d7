"""Kernels of imported ViTs (runtime_c/src/class_token.c) on the host (ASan/UBSan), bit-exact with
codegen.ref on seeded random shapes and on saturating edge cases; parameter checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    ERR_ARG,
    assert_same,
    check_ok,
    float_patch_embed,
    float_pool_head,
    rand_requant,
    rand_s8,
    random_linear,
)


def token_head_case(p: qp.TokenHeadParams, x: np.ndarray) -> kh.Writer:
    return kh.Writer(kh.Op.TOKEN_HEAD).params(p).int(p.classes).s8(x.reshape(-1))


def pool_norm_case(p: qp.PoolNormHeadParams, x: np.ndarray) -> kh.Writer:
    return kh.Writer(kh.Op.POOL_NORM_HEAD).params(p).int(p.classes).s8(x.reshape(-1))


def prefix_case(p: qp.PatchEmbedPrefixParams, image: np.ndarray) -> kh.Writer:
    e = p.embed
    w = kh.Writer(kh.Op.PATCH_EMBED_PREFIX).params(p).int((p.prefix_tokens + e.tokens) * e.dim)
    return w.int(e.patch * e.image_w * e.channels).s8(image.reshape(-1))


def token_head(rng: np.random.Generator, tokens: int, dim: int, classes: int, readout: int, extreme: bool = False):
    base, _ = float_pool_head(rng, tokens, dim, classes)  # a LayerNorm built from floats
    head = random_linear(rng, readout * dim, classes, extreme=extreme)
    return qp.TokenHeadParams(tokens, dim, classes, readout, base.ln, head)


def pool_norm_head(rng: np.random.Generator, tokens: int, first: int, dim: int, classes: int):
    base, _ = float_pool_head(rng, tokens, dim, classes)
    return qp.PoolNormHeadParams(
        tokens=tokens,
        first_token=first,
        dim=dim,
        classes=classes,
        pool_input_offset=base.pool_input_offset,
        pool_output_offset=base.pool_output_offset,
        pool=qp.pool_requant(tokens - first, 0.05, 0.04),
        ln=base.ln,
        head=base.head,
    )


@pytest.mark.parametrize("seed", range(2))
def test_token_head(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    cases = []
    for tokens, dim, classes, readout, extreme in ((2, 8, 2, 1, False), (17, 32, 10, 2, False), (65, 64, 7, 2, True)):
        cases.append((token_head(rng, tokens, dim, classes, readout, extreme), rand_s8(rng, tokens, dim)))
    p, _ = cases[0]
    cases.append((replace(p, readout=2), np.full((2, 8), 127, np.int8)))  # every token read, saturated input
    cases[-1] = (replace(cases[-1][0], head=random_linear(rng, 16, 2, extreme=True)), cases[-1][1])
    for res, (p, x) in zip(harness.run([token_head_case(p, x) for p, x in cases]), cases, strict=True):
        check_ok(res, "token_head")
        assert res.aux == scratch.token_head_s8_scratch_size(p.readout, p.dim) == scratch.align4(p.readout * p.dim)
        assert_same(res.outputs[0], ref.token_head(p, x), f"token_head T{p.tokens} E{p.dim} readout {p.readout}")


@pytest.mark.parametrize("seed", range(2))
def test_pool_norm_head(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(3000 + seed)
    cases = []
    for tokens, first, dim, classes in ((1, 0, 8, 2), (17, 1, 32, 10), (66, 2, 64, 7)):
        cases.append((pool_norm_head(rng, tokens, first, dim, classes), rand_s8(rng, tokens, dim)))
    p, _ = cases[1]  # extreme offsets and requantization, saturated rows
    p = replace(p, pool_input_offset=128, pool_output_offset=-128, pool=rand_requant(rng, -31, 30))
    cases.append((p, np.full((17, 32), 127, np.int8)))
    for res, (p, x) in zip(harness.run([pool_norm_case(p, x) for p, x in cases]), cases, strict=True):
        check_ok(res, "pool_norm_head")
        assert res.aux == scratch.pool_norm_head_s8_scratch_size(p.dim) == 4 * p.dim + 2 * scratch.align4(p.dim)
        assert_same(res.outputs[0], ref.pool_norm_head(p, x), f"pool_norm_head T{p.tokens} first {p.first_token}")


def test_patch_embed_prefix(harness: kh.Harness) -> None:
    rng = np.random.default_rng(4000)
    cases = []
    for h, w, c, patch, dim, k in ((8, 8, 1, 4, 8, 1), (12, 12, 3, 4, 16, 2), (8, 8, 3, 2, 12, 0)):
        embed, image = float_patch_embed(rng, h, w, c, patch, dim)
        prefix = rand_s8(rng, k, dim)
        prefix[:, :1] = -128  # extremes pass through unchanged
        cases.append((qp.PatchEmbedPrefixParams(embed, k, prefix), image))
    for res, (p, image) in zip(harness.run([prefix_case(p, im) for p, im in cases]), cases, strict=True):
        check_ok(res, "patch_embed_prefix")
        want = ref.patch_embed_prefix(p, image)
        assert want.shape == (p.prefix_tokens + p.embed.tokens, p.embed.dim)
        assert_same(res.outputs[0], want, f"patch_embed_prefix prefix {p.prefix_tokens}")


def test_class_token_parameter_checks(harness: kh.Harness) -> None:
    rng = np.random.default_rng(5000)
    t = token_head(rng, 4, 8, 3, 2)
    pn = pool_norm_head(rng, 4, 1, 8, 3)
    x = rand_s8(rng, 4, 8)
    bad = [
        token_head_case(replace(t, readout=5), x),  # more rows than tokens
        token_head_case(replace(t, readout=0), x),
        token_head_case(replace(t, classes=4), x),  # head width disagrees
        pool_norm_case(replace(pn, first_token=4), x),  # nothing to average
        pool_norm_case(replace(pn, first_token=-1), x),
        pool_norm_case(replace(pn, pool_input_offset=129), x),
    ]
    for k, res in enumerate(harness.run(bad)):
        assert res.status == ERR_ARG, f"case {k}: expected MCUF_ERR_ARG, got {res.status}"
    embed, image = float_patch_embed(rng, 8, 8, 1, 4, 8)
    too_many = qp.PatchEmbedPrefixParams(embed, qp.MAX_PREFIX_TOKENS + 1, rand_s8(rng, qp.MAX_PREFIX_TOKENS + 1, 8))
    assert harness.run_one(prefix_case(too_many, image)).status == ERR_ARG
