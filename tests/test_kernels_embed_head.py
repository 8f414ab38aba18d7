"""Patch embedding (streamed from an input callback) and the pool + classifier head (C vs Python, bit-exact)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    ERR_INPUT,
    assert_same,
    check_ok,
    float_patch_embed,
    float_pool_head,
    patch_case,
    patch_shape,
    pool_case,
    rand_requant,
)


@pytest.mark.parametrize("seed", range(2))
def test_patch_embed(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(900 + seed)
    configs = [(8, 8, 1, 2, 16), (12, 20, 3, 4, 24), (6, 6, 2, 6, 8), (16, 8, 3, 8, 12)]
    cases, params, images = [], [], []
    for image_h, image_w, channels, patch, dim in configs:
        p, img = float_patch_embed(rng, image_h, image_w, channels, patch, dim)
        for tile in (1, 2, 4):  # patches per pass (a partial last group per stripe): identical x
            params.append(replace(p, tile=tile))
            images.append(img)
            cases.append(patch_case(params[-1], img))
    for res, p, img in zip(harness.run(cases), params, images, strict=True):
        where = f"patch_embed {p.image_h}x{p.image_w}x{p.channels} tile {p.tile}"
        check_ok(res, where)
        assert res.aux == scratch.patch_embed_s8_scratch_size(*patch_shape(p), p.tile)
        assert list(res.outputs[1]) == list(range(p.image_h // p.patch)), "stripes read once, in order"
        assert_same(res.outputs[0], ref.patch_embed(replace(p, tile=1), img), where)
    assert scratch.patch_embed_s8_scratch_size(*patch_shape(params[0]), 3) == -1


def test_patch_embed_reader_error(harness: kh.Harness) -> None:
    rng = np.random.default_rng(5)
    p, img = float_patch_embed(rng, 12, 8, 2, 4, 8)
    res = harness.run_one(patch_case(p, img, fail_at=1))
    assert res.status == ERR_INPUT
    assert list(res.outputs[1]) == [0, 1]
    grid_w = p.image_w // p.patch
    assert_same(res.outputs[0][: grid_w * p.dim], ref.patch_embed(p, img)[:grid_w], "tokens before the failure")


@pytest.mark.parametrize("seed", range(3))
def test_pool_head(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    cases, params, xs = [], [], []
    for tokens, dim, classes in ((1, 8, 2), (16, 32, 10), (49, 64, 7)):
        p, x = float_pool_head(rng, tokens, dim, classes)
        params.append(p)
        xs.append(x)
        cases.append(pool_case(p, x))
    p = replace(params[1], pool_input_offset=128, pool_output_offset=-128, pool=rand_requant(rng, -31, 30))
    x = np.full((16, 32), 127, np.int8)
    params.append(p)
    xs.append(x)
    cases.append(pool_case(p, x))
    for res, p, x in zip(harness.run(cases), params, xs, strict=True):
        check_ok(res, "pool_head")
        assert res.aux == scratch.pool_head_s8_scratch_size(p.dim) == 4 * p.dim + 2 * scratch.align4(p.dim)
        assert_same(res.outputs[0], ref.pool_head(p, x), f"pool_head T{p.tokens} E{p.dim}")
