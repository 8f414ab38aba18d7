"""The C contract: param dataclasses mirror mcuf.h, invalid parameters are rejected, scratch-size
overflow, and the runtime builds cleanly for every Cortex-M core and pedantic host C."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    ERR_ARG,
    add_case,
    assert_same,
    attention_case,
    float_attention,
    float_mlp,
    float_patch_embed,
    float_pool_head,
    layernorm_case,
    linear_case,
    lowrank_case,
    mlp_case,
    patch_case,
    pool_case,
    rand_s8,
    random_head,
    random_layernorm,
    random_linear,
    softmax_case,
)


def _c_structs() -> dict[str, list[tuple[str, str]]]:
    """typedef struct { ... } name; -> [(c_type, field_name)] in declaration order."""
    text = (kh.RUNTIME / "include" / "mcuf.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    structs = {}
    for body, name in re.findall(r"typedef struct \{(.*?)\}\s*(\w+);", text, flags=re.S):
        out = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            first, *rest = decl.split(",")
            m = re.match(r"(?:const )?(\w+)\s*(\**)\s*(\w+)$", first.strip())
            assert m, f"cannot parse declaration {decl!r} in {name}"
            c_type = m.group(1) + m.group(2)
            out.append((c_type, m.group(3)))
            out += [(c_type, r.strip().lstrip("*").strip()) for r in rest]
        structs[name] = out
    return structs


def test_dataclasses_mirror_c_structs() -> None:
    structs = _c_structs()
    by_c_type = {cls.C_TYPE: cls for cls in qp.PARAM_TYPES}
    assert set(by_c_type) == set(structs), "every C param struct has exactly one dataclass"
    expected_annotation = {
        "int32_t": "int",
        "uint64_t": "int",
        "int8_t*": "np.ndarray | None",
        "int32_t*": "np.ndarray | None",
    }
    for c_name, c_fields in structs.items():
        cls = by_c_type[c_name]
        py_fields = [(f.name, f.type) for f in fields(cls)]
        assert [n for n, _ in py_fields] == [n for _, n in c_fields], f"{cls.__name__} vs {c_name}"
        for (c_type, name), (_, annotation) in zip(c_fields, py_fields, strict=True):
            want = by_c_type[c_type].__name__ if c_type in by_c_type else expected_annotation[c_type]
            assert annotation == want, f"{cls.__name__}.{name}: annotated {annotation}, C type {c_type}"


def test_harness_driver_handles_every_op() -> None:
    """Op is the one op list (the driver's enum is generated from it): the driver dispatches each."""
    cases = set(re.findall(r"case (OP_\w+):", kh.DRIVER.read_text()))
    assert cases == {f"OP_{op.name}" for op in kh.Op}
    assert all(f"OP_{op.name} = {op.value}," in kh.ops_header() for op in kh.Op)


def test_dataclasses_check_dtypes_and_shapes() -> None:
    with pytest.raises(TypeError):
        qp.SoftmaxParams(length=4, exp_table=np.zeros(256, dtype=np.int64))
    with pytest.raises(ValueError):
        qp.LayerNormParams(3, 0, 0, np.zeros(4, np.int32), np.zeros(3, np.int32), qp.Requant(0, 0))
    with pytest.raises(TypeError):
        qp.Requant(1.5, 0)  # type: ignore[arg-type]
    p = qp.Requant(np.int64(1 << 30), np.int32(-3))
    assert type(p.multiplier) is int and type(p.shift) is int


def test_invalid_parameters(harness: kh.Harness) -> None:
    rng = np.random.default_rng(13)
    lin = random_linear(rng, 8, 4)
    x8 = rand_s8(rng, 1, 8)
    ln = random_layernorm(rng, 8)
    add = qp.add_params(0.1, 0, 0.1, 0, 0.1, 0)
    attn, xa = float_attention(rng, 8, 16, 2, 4)
    mlp, xm = float_mlp(rng, 8, 16, 32, 4)
    pool, xp = float_pool_head(rng, 8, 16, 3)
    patch, img = float_patch_embed(rng, 8, 8, 1, 4, 8)
    big_ln = qp.LayerNormParams(1025, 0, 0, np.zeros(1025, np.int32), np.zeros(1025, np.int32), qp.Requant(0, 0))
    bad_table = qp.exp_table(0.1)
    bad_table[0] = 65535
    lut_table = qp.gelu_table(0.05, 3, 0.03, -100)
    bad = {
        "linear in_features 0": linear_case(replace(lin, in_features=0, weights=np.zeros((4, 0), np.int8)), x8, False),
        "linear input_offset 129": linear_case(replace(lin, input_offset=129), x8, False),
        "linear output_offset 128": linear_case(replace(lin, output_offset=128), x8, True),
        "linear act_min > act_max": linear_case(replace(lin, act_min=5, act_max=4), x8, False),
        "linear multiplier < 2^30": linear_case(replace(lin, multiplier=np.full(4, 5, np.int32)), x8, False),
        "linear shift 31": linear_case(replace(lin, shift=np.full(4, 31, np.int32)), x8, False),
        "linear NULL weights": linear_case(replace(lin, weights=None), x8, False),
        "lowrank rank mismatch": lowrank_case(qp.LowRankParams(3, random_linear(rng, 8, 4), lin), x8),
        "layernorm dim 1025": layernorm_case(big_ln, rand_s8(rng, 1, 1025)),
        "layernorm dim 0": layernorm_case(replace(ln, dim=0, gamma=np.zeros(0, np.int32), beta=None), x8[:, :0]),
        "layernorm shift -32": layernorm_case(replace(ln, out=qp.Requant(1 << 30, -32)), x8),
        "layernorm epsilon 2^62": layernorm_case(replace(ln, epsilon=qp.LN_MAX_EPSILON + 1), x8),
        "layernorm epsilon 2^64 - 1": layernorm_case(replace(ln, epsilon=qp.UINT64_MAX), x8),
        "softmax length 32768": softmax_case(qp.softmax_params(32768, 0.1), rand_s8(rng, 1, 32768)),
        "softmax length 0": softmax_case(qp.softmax_params(0, 0.1), x8[:, :0]),
        "softmax table[0] != 65536": softmax_case(qp.SoftmaxParams(8, bad_table), x8),
        "softmax NULL table": softmax_case(qp.SoftmaxParams(8, None), x8),
        "lut NULL table": kh.Writer(kh.Op.LUT).params(qp.LutParams(None)).int(kh.LUT_FRESH).s8(x8[0]),
        "lut NULL params": kh.Writer(kh.Op.LUT).params(qp.LutParams(lut_table)).int(kh.LUT_NULL_PARAMS).s8(x8[0]),
        "add left_shift 24": add_case(replace(add, left_shift=24), x8[0], x8[0]),
        "add input2_offset -128": add_case(replace(add, input2_offset=-128), x8[0], x8[0]),
        "add act_max 128": add_case(replace(add, act_max=128), x8[0], x8[0]),
        "scores head_dim 0": kh.Writer(kh.Op.SCORES).params(random_head(rng, 4, 0)).int(1).int(4).s8(x8).s8(x8),
        "scores stride < head_dim": kh.Writer(kh.Op.SCORES)
        .params(random_head(rng, 2, 4))
        .int(3)
        .int(2)
        .s8(x8[0, :4])
        .s8(x8),
        "attention heads 3 of dim 16": attention_case(replace(attn, heads=3), xa),
        "attention head.tokens": attention_case(replace(attn, head=replace(attn.head, tokens=7)), xa),
        "attention softmax.length": attention_case(replace(attn, softmax=qp.softmax_params(7, 0.1)), xa),
        "attention q in_features": attention_case(replace(attn, qkv_rank=0), xa),
        "attention proj multiplier": attention_case(
            replace(attn, proj=replace(attn.proj, multiplier=np.full(16, 7, np.int32))), xa
        ),
        "attention residual offset": attention_case(
            replace(attn, residual=replace(attn.residual, output_offset=200)), xa
        ),
        "attention ln.dim": attention_case(replace(attn, ln=big_ln), xa),
        "attention ln.epsilon": attention_case(replace(attn, ln=replace(attn.ln, epsilon=qp.LN_MAX_EPSILON + 1)), xa),
        "mlp fc2 shape": mlp_case(replace(mlp, hidden=31), xm),
        "mlp NULL gelu": mlp_case(replace(mlp, gelu_table=None), xm),
        "mlp ln.epsilon": mlp_case(replace(mlp, ln=replace(mlp.ln, epsilon=qp.LN_MAX_EPSILON + 1)), xm),
        "mlp fc1 up multiplier": mlp_case(
            replace(mlp, fc1=replace(mlp.fc1, up=replace(mlp.fc1.up, shift=np.full(32, -40, np.int32)))), xm
        ),
        "pool misaligned scratch": pool_case(pool, xp, misalign=True),
        "pool classes": pool_case(replace(pool, classes=4), xp),
        "pool offset": pool_case(replace(pool, pool_input_offset=-128), xp),
        "pool ln.epsilon": pool_case(replace(pool, ln=replace(pool.ln, epsilon=qp.LN_MAX_EPSILON + 1)), xp),
        "patch proj.bias not NULL": patch_case(
            replace(patch, proj=replace(patch.proj, bias=np.zeros(8, np.int32))), img
        ),
        "patch image_w % patch": patch_case(replace(patch, image_w=6, token_bias=None), img[:, :6]),
    }
    results = harness.run(list(bad.values()))
    for name, res in zip(bad, results, strict=True):
        assert res.status == ERR_ARG, f"{name}: expected MCUF_ERR_ARG, got {res.status}"
    unchanged = {"attention": xa, "mlp": xm}
    for name, res in zip(bad, results, strict=True):
        kind = name.split()[0]
        if kind in unchanged:
            assert_same(res.outputs[0], unchanged[kind], f"{name}: x must be unchanged on MCUF_ERR_ARG")
        if kind == "pool":
            assert not res.outputs[0].any(), f"{name}: logits written despite MCUF_ERR_ARG"


def test_scratch_sizes_negative_and_overflow() -> None:
    assert scratch.lowrank_linear_s8_scratch_size(-1) == -1
    assert scratch.lowrank_linear_s8_scratch_size(5) == 8
    assert scratch.lowrank_linear_s8_scratch_size(0) == 0
    assert scratch.pool_head_s8_scratch_size(3) == 12 + 4 + 4
    assert scratch.pool_head_s8_scratch_size(1 << 29) == -1
    assert scratch.patch_embed_s8_scratch_size(1 << 16, 1 << 20, 1 << 10, 1 << 4) == -1


# Undefined symbols the portable kernels may need: the library's own (mcuf_ public, mcufi_ internal,
# mcuf_internal.h), and from libgcc / libc: 64-bit division and shifts, integer division on cores
# without it, and compiler-generated block copies.
ALLOWED_EXTERNAL = re.compile(
    r"^(mcufi?_\w+|mem(cpy|set|move)|__aeabi_(u?ldivmod|u?idiv(mod)?|l(asl|lsr|asr)|lmul|mem(cpy|set|move|clr)\w*))$"
)


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m0plus", "cortex-m33"])
def test_arm_cross_compile(cpu: str, tmp_path: Path) -> None:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
    objs = []
    for src in kh.runtime_sources():
        obj = tmp_path / (src.stem + ".o")
        cmd = [gcc, *kh.WARNINGS, "-O2", f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=soft"]
        cmd += [f"-I{kh.RUNTIME / 'include'}", "-c", str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name} for {cpu}:\n{proc.stderr}"
        objs.append(obj)
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        return
    out = subprocess.run([nm, "-u", *map(str, objs)], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in out.splitlines() if line.strip() and not line.endswith(":")}
    foreign = sorted(s for s in undefined if not ALLOWED_EXTERNAL.match(s))
    assert not foreign, f"kernels reference outside symbols (float, libc, ...): {foreign}"


def test_host_compile_pedantic(tmp_path: Path) -> None:
    cc = kh.host_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    for src in kh.runtime_sources():
        cmd = [cc, *kh.WARNINGS, "-O2", "-pedantic-errors", "-Wshadow", "-Wcast-align", "-Wstrict-prototypes"]
        cmd += [f"-I{kh.RUNTIME / 'include'}", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name}:\n{proc.stderr}"
