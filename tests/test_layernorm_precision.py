"""Integer LayerNorm vs float LayerNorm (PyTorch semantics, with the model's epsilon).

DESIGN section 3: for widths >= 16 the integer LayerNorm (mcuf_layernorm_s8 == ref.layernorm) is
within 1 output LSB of ``torch.nn.functional.layer_norm`` of the dequantized row, quantized with
the same output scale, on random and on near-constant rows (where the epsilon and the square
root's fraction bits matter most). The C kernel runs on every case too, so the bound is measured
on the integers the C computes. The model's epsilon must reach the kernel: a LayerNorm without it
fails the bound here (checked), and the frontend/quantizer carry each module's own epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mcuformer.arch import ArchConfig
from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.compile import to_hwc
from mcuformer.codegen.frontend import from_torch
from mcuformer.codegen.ir import Op
from mcuformer.codegen.quantize import calibrate, quantize
from mcuformer.model import ViT
from tests import kernel_harness as kh
from tests.kernel_cases import assert_same, check_ok, layernorm_case

_HERE = Path(__file__).resolve().parent

WIDTHS = (16, 17, 24, 32, 48, 64, 96, 128, 192, 256)
ROWS = 48  # per case: half random, half near-constant


@dataclass(frozen=True)
class LNCase:
    params: qp.LayerNormParams
    x_q: np.ndarray  # int8 (ROWS, dim)
    want: np.ndarray  # float LayerNorm quantized to the output grid (clamped), int64 (ROWS, dim)
    want_no_eps: np.ndarray  # the same with eps = 0
    near_constant: np.ndarray  # bool (ROWS,)


def _rows(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows: random (spread from 1 to 60 steps around a random centre) and near-constant
    (a constant plus a few +-1 / +-2 steps, or exactly constant)."""
    half = ROWS // 2
    centre = rng.integers(-100, 100, size=(half, 1))
    spread = rng.uniform(1.0, 60.0, size=(half, 1))
    rand = np.clip(np.rint(centre + spread * rng.normal(size=(half, dim))), -128, 127)
    base = rng.integers(-128, 128, size=(half, 1))
    step = rng.integers(1, 3, size=(half, 1)) * rng.choice([-1, 1], size=(half, dim))
    near = np.clip(base + step * (rng.random((half, dim)) < rng.uniform(0.02, 0.5, size=(half, 1))), -128, 127)
    near[0] = base[0]  # zero variance
    near[1] = base[1]
    near[1, 0] = np.clip(base[1, 0] + 1, -128, 127) if base[1, 0] < 127 else 126  # one step off
    x = np.concatenate([rand, near]).astype(np.int8)
    return x, np.arange(ROWS) >= half


def _float_ln_q(x_f: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, s_out: float, zp_out: int):
    y = torch.nn.functional.layer_norm(
        torch.from_numpy(x_f), (x_f.shape[-1],), torch.from_numpy(gamma), torch.from_numpy(beta), eps
    ).numpy()
    return y, qp.quantize_tensor(y, s_out, zp_out).astype(np.int64)


def _case(rng: np.random.Generator, dim: int) -> LNCase:
    s_in = float(10 ** rng.uniform(-3.0, -0.5))
    zp_in = int(rng.integers(-128, 128))
    eps = float(rng.choice([1e-5, 1e-6]))
    x_q, near = _rows(rng, dim)
    x_f = s_in * (x_q.astype(np.float64) - zp_in)
    gamma = rng.normal(1.0, 0.5, size=dim)
    beta = rng.normal(0.0, 0.5, size=dim)
    y, want = _float_ln_q(x_f, gamma, beta, eps, 1.0, 0)  # y only: the output grid comes from it
    s_out, zp_out = qp.choose_qparams(float(y.min()), float(y.max()))
    _, want = _float_ln_q(x_f, gamma, beta, eps, s_out, zp_out)
    with np.errstate(invalid="ignore"):  # constant rows are 0 / 0 without epsilon; masked in the test
        _, want_no_eps = _float_ln_q(x_f, gamma, beta, 0.0, s_out, zp_out)
    p = qp.layernorm_params(gamma, beta, s_in, zp_in, s_out, zp_out, eps=eps)
    return LNCase(p, x_q, want, want_no_eps, near)


def _cases() -> list[LNCase]:
    rng = np.random.default_rng(1212)
    return [_case(rng, dim) for dim in WIDTHS for _ in range(6)]


def test_layernorm_within_one_lsb_of_torch(harness: kh.Harness) -> None:
    cases = _cases()
    results = harness.run([layernorm_case(c.params, c.x_q) for c in cases])
    worst = {"random": 0, "near-constant": 0}
    for i, (c, res) in enumerate(zip(cases, results, strict=True)):
        got = ref.layernorm(c.params, c.x_q).astype(np.int64)
        check_ok(res, f"layernorm precision case {i}")
        assert_same(res.outputs[0].reshape(got.shape), got, f"layernorm precision case {i} (dim {c.params.dim})")
        err = np.abs(got - c.want).max(axis=-1)
        for kind, rows in (("random", ~c.near_constant), ("near-constant", c.near_constant)):
            k = int(np.argmax(np.where(rows, err, -1)))
            assert err[k] <= 1, (
                f"dim {c.params.dim} {kind} row {k}: {int(err[k])} LSB from float LayerNorm "
                f"(got {got[k].tolist()}, want {c.want[k].tolist()})"
            )
            worst[kind] = max(worst[kind], int(err[rows].max()))
    assert worst == {"random": 1, "near-constant": 1}, worst  # rounding ties exist: 0 would be suspicious


def test_layernorm_without_epsilon_fails_the_bound() -> None:
    """The near-constant rows are sensitive to the epsilon: dropping it (epsilon 0 in the kernel)
    breaks the 1 LSB bound, so the test above would catch a compiler that loses the model's eps."""
    worst = 0
    for c in _cases():
        got = ref.layernorm(replace(c.params, epsilon=0), c.x_q).astype(np.int64)
        worst = max(worst, int(np.abs(got - c.want)[c.near_constant].max()))
        # and without epsilon the kernel still tracks float LayerNorm without epsilon (rows with
        # some variance: a constant row is 0 / 0 in float)
        varied = c.near_constant & (c.x_q != c.x_q[:, :1]).any(axis=-1)
        assert np.abs(got - c.want_no_eps)[varied].max() <= 1
    assert worst > 1, f"without epsilon the worst near-constant row is only {worst} LSB off"


def test_epsilon_from_the_model_reaches_the_kernel() -> None:
    arch = ArchConfig(16, 1, 4, 16, 2, (2, 2), (2.0, 2.0), (0, 8), (0, 0), 10)
    torch.manual_seed(0)
    model = ViT(arch).eval()
    chosen = {"blocks.0.ln1": 1e-5, "blocks.0.ln2": 3e-4, "blocks.1.ln1": 0.0, "blocks.1.ln2": 1e-6, "norm": 2e-3}
    for name, eps in chosen.items():
        model.get_submodule(name).eps = eps
    graph = from_torch(model)
    eps_of = {n.name: n.attrs.eps for n in graph.nodes if n.op == Op.LAYERNORM}
    assert sorted(eps_of.values()) == sorted(chosen.values())
    images = (torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1).numpy()
    qgraph = quantize(graph, calibrate(graph, to_hwc(images)))
    lns = [n for n in qgraph.nodes if n.op == Op.LAYERNORM]
    assert len(lns) == len(chosen)
    for n in lns:
        eps, dim = n.attrs.eps, n.kernel.dim
        s_in = qgraph.tensors[n.inputs[0]].qparams.scale
        want = eps * dim * dim / (s_in * s_in) * 2.0 ** (2 * qp.LN_SQRT_BITS)
        assert abs(n.kernel.epsilon - want) <= 0.5 + 1e-9 * want, (n.name, n.kernel.epsilon, want)
        assert (n.kernel.epsilon > 0) == (eps > 0), n.name
