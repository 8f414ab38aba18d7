"""The convolutional stem's kernel, mcuf_conv2d_3x3_s8 (C vs the Python integer reference, bit-exact):
seeded random shapes, strides 1 and 2, odd sizes, saturating parameters, rows read once and in order,
the input callback's failure, bad parameters; the float-derived parameters track a float convolution."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import ERR_INPUT, assert_same, check_ok, rand_s8, random_linear

ERR_ARG = -1


def conv_case(p: qp.Conv2dParams, image: np.ndarray, fail_at: int = -1) -> kh.Writer:
    out_len = max(p.out_h * p.out_w * p.out_channels, 1)
    w = kh.Writer(kh.Op.CONV2D).params(p).int(fail_at).int(out_len).int(p.in_w * p.in_channels)
    return w.s8(image.reshape(-1))


def random_conv(rng: np.random.Generator, h: int, w: int, cin: int, cout: int, stride: int, extreme: bool = False):
    proj = random_linear(rng, 9 * cin, cout, bias=True, extreme=extreme)
    return qp.Conv2dParams(h, w, cin, stride, proj)


# (in_h, in_w, in_channels, out_channels, stride): square and not, odd sides, one row, one column
SHAPES = [(8, 8, 1, 8, 1), (9, 7, 3, 5, 2), (28, 28, 1, 16, 2), (6, 10, 8, 16, 1), (1, 5, 2, 3, 1), (5, 1, 2, 3, 2),
          (14, 14, 16, 16, 2), (3, 3, 4, 2, 2)]


@pytest.mark.parametrize("seed", range(2))
def test_conv2d_bit_exact(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(1300 + seed)
    cases, params, images = [], [], []
    for h, w, cin, cout, stride in SHAPES:
        for extreme in (False, True):
            p = random_conv(rng, h, w, cin, cout, stride, extreme)
            img = rand_s8(rng, h, w, cin)
            if extreme:  # saturating inputs: every pixel at an int8 end
                img = np.where(rng.random(img.shape) < 0.5, -128, 127).astype(np.int8)
            params.append(p)
            images.append(img)
            cases.append(conv_case(p, img))
    for res, p, img in zip(harness.run(cases), params, images, strict=True):
        where = f"conv2d {p.in_h}x{p.in_w}x{p.in_channels} -> {p.out_channels} stride {p.stride}"
        check_ok(res, where)
        assert res.aux == scratch.conv2d_3x3_s8_scratch_size(p.in_w, p.in_channels), where
        assert list(res.outputs[1]) == list(range(p.in_h)), f"{where}: rows read once, in order"
        assert_same(res.outputs[0], ref.conv2d(p, img), where)


def test_conv2d_padding_adds_nothing(harness: kh.Harness) -> None:
    """An image of the input zero point everywhere: every output is the requantized bias alone, so
    the padded taps (which hold the zero point) and the real ones agree at the border."""
    rng = np.random.default_rng(7)
    p = random_conv(rng, 6, 6, 2, 4, 2)
    img = np.full((6, 6, 2), -p.proj.input_offset, dtype=np.int8)
    out = ref.conv2d(p, img)
    assert (out == out[0, 0]).all()
    res = harness.run_one(conv_case(p, img))
    check_ok(res, "conv2d zero-point image")
    assert_same(res.outputs[0], out, "conv2d zero-point image")


def test_conv2d_input_failure_and_bad_params(harness: kh.Harness) -> None:
    rng = np.random.default_rng(8)
    p = random_conv(rng, 8, 8, 2, 4, 2)
    img = rand_s8(rng, 8, 8, 2)
    bad = [
        replace(p, stride=3),
        replace(p, in_channels=3),  # proj.in_features != 9 * in_channels
        replace(p, in_h=0),
        replace(p, proj=replace(p.proj, bias=None)),
        replace(p, proj=replace(p.proj, act_min=5, act_max=4)),
    ]
    results = harness.run([conv_case(p, img, fail_at=3)] + [conv_case(b, img) for b in bad])
    assert results[0].status == ERR_INPUT
    assert list(results[0].outputs[1]) == [0, 1, 2, 3], "stops at the failing row"
    for res, b in zip(results[1:], bad, strict=True):
        assert res.status == ERR_ARG, b
        assert not np.asarray(res.outputs[1]).size, "no row is read before the checks"


def test_conv2d_scratch_size_formula() -> None:
    assert scratch.conv2d_3x3_s8_scratch_size(28, 1) == 12 + 84
    assert scratch.conv2d_3x3_s8_scratch_size(14, 16) == 144 + 672
    assert scratch.conv2d_3x3_s8_scratch_size(0, 3) == -1
    assert scratch.conv2d_3x3_s8_scratch_size(4, 7282) == -1  # 9 * 7282 > MCUF_LINEAR_MAX_IN


def test_conv2d_params_track_float_convolution() -> None:
    """conv2d_params from float weights: the integer output dequantizes to the float conv + ReLU
    within two output steps (half a step of output rounding, the rest from rounding 27 weights per
    channel to int8), and 90 % of the outputs within one."""
    rng = np.random.default_rng(11)
    h, w, cin, cout = 10, 10, 3, 8
    x = rng.uniform(-1, 1, (h, w, cin))
    weight = rng.normal(0, 0.3, (cout, 9 * cin))
    bias = rng.normal(0, 0.1, cout)
    s_in, zp_in = 2 / 255, 0
    xq = qp.quantize_tensor(x, s_in, zp_in)
    xf = qp.dequantize_tensor(xq, s_in, zp_in)
    want = np.maximum(ref.im2col_3x3(xf, 2, 0.0) @ weight.T + bias, 0)
    s_out, zp_out = qp.choose_qparams(0.0, float(want.max()))
    p = qp.conv2d_params(weight, bias, h, w, cin, 2, s_in, zp_in, s_out, zp_out)
    assert p.proj.act_min == zp_out, "ReLU folded into the clamp"
    got = qp.dequantize_tensor(ref.conv2d(p, xq), s_out, zp_out)
    err = np.abs(got - want)
    assert err.max() <= 2 * s_out and (err <= s_out).mean() > 0.9
