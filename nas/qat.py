"""Quantization-aware fine-tuning of a trained static ViT through the compiler's own graph.

The model's parameters are trained through the fake-quantized primitive graph (codegen.fake_quant:
each op's ``train_forward`` computes it on the grid its integer kernel produces, gradients by the
straight-through estimator), so the loss sees the integer model's rounding: per-channel weights,
per-tensor activations with the ranges the compiler will use, the softmax kernel's output, the GELU
table, the integer LayerNorm.

- start: the trained float model and the compiler's calibration ranges (post-training quantization);
- activation ranges: an exponential moving average of every batch's (min, max) during the first
  ``observe_epochs``, then frozen (the graph input's range never moves);
- optimisation: AdamW at a small learning rate with cosine decay, the recipe's augmentation and label
  smoothing; the convolutional stem stays frozen (its folded BatchNorm is a constant of the graph);
- selection: after every epoch the fake-quant model's top-1 on a held-out split carved from the
  training data; the best epoch wins, epoch 0 (the post-training starting point) included, so the
  result is never below the start on that split. The test split is never looked at.

The model keeps the selected weights; ``QATResult.ranges`` are the activation ranges export
quantizes with (codegen.compile's ``ranges=``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.codegen.compile import to_hwc
from mcuformer.codegen.fake_quant_graph import GraphContext, run_graph
from mcuformer.codegen.frontend import from_torch
from mcuformer.codegen.ir import Graph, Node, Op
from mcuformer.codegen.quantize import calibrate
from mcuformer.data import Dataset
from mcuformer.model import ViT, resize_images
from mcuformer.nas.train import TrainConfig, deterministic, evaluate, lr_at, train_batches

Log = Callable[[str], None]
Ranges = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class QATConfig:
    epochs: int = 3
    observe_epochs: float = 1.0  # EMA of the activation ranges for this many epochs, then frozen
    ema_decay: float = 0.9  # range <- decay * range + (1 - decay) * the batch's (min, max)
    holdout_fraction: float = 0.1  # of the training images: the checkpoint selection's split


@dataclass(frozen=True)
class QATResult:
    ranges: Ranges  # the selected epoch's activation ranges, for every tensor of the float graph
    selected_epoch: int  # 0: the post-training starting point was kept
    holdout_top1: tuple[float, ...]  # the fake-quant model's top-1 on the held-out split, epochs 0..E
    history: tuple[dict[str, float], ...] = field(default=())
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "selected_epoch": self.selected_epoch,
            "holdout_top1": list(self.holdout_top1),
            "history": list(self.history),
            "seconds": round(self.seconds, 2),
        }


_FIELDS = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}  # node attr -> torch name


def module_path(node: Node) -> str | None:
    """The ViT module holding a node's parameters (codegen.frontend's naming); None: a frozen stem layer."""
    name = node.name
    if node.op == Op.CONV2D:
        return None
    if name in ("patch_embed", "head"):
        return name
    fixed = {"head.classifier": "head", "head.ln": "norm"}
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"blocks\.(\d+)\.(attn|mlp)\.(.+)", name)
    if match is None:
        return None
    block, part, rest = match.groups()
    if rest == "ln":
        return f"blocks.{block}.{'ln1' if part == 'attn' else 'ln2'}"
    return f"blocks.{block}.attn.{rest}" if part == "attn" else f"blocks.{block}.{rest}"


class ModelParams:
    """A node's parameters as the model's own tensors (so training the graph trains the model); the
    patch embedding's per-token bias is its bias plus the position embedding, as the frontend folds it."""

    def __init__(self, model: ViT, graph: Graph) -> None:
        self.params = dict(model.named_parameters())
        for node in graph.nodes:  # boundary check: the graph was built from these very tensors
            for attr in ("weight", "bias", "gamma", "beta"):
                value = getattr(node.attrs, attr)
                tensor = self(node, attr) if value is not None else None
                if tensor is not None:
                    assert tuple(tensor.shape) == value.shape, (node.name, attr, tensor.shape, value.shape)
                    assert np.allclose(tensor.detach().double().numpy(), value, atol=1e-6), (node.name, attr)

    def __call__(self, node: Node, attr: str) -> torch.Tensor | None:
        path = module_path(node)
        if path is None or attr not in _FIELDS:
            return None
        if node.op == Op.PATCH_EMBED and attr == "bias":
            return self.params["patch_embed.bias"][None, :] + self.params["pos_embed"]  # (T, E)
        return self.params[f"{path}.{_FIELDS[attr]}"]

    def trained(self) -> list[nn.Parameter]:
        """The parameters QAT trains: everything but the convolutional stem."""
        return [p for name, p in self.params.items() if not name.startswith("stem.")]


class FakeQuantViT:
    """The model through its fake-quantized compiler graph: (B, C, H, W) images -> (B, K) logits."""

    def __init__(self, model: ViT, ranges: Ranges, ema_decay: float = 0.9) -> None:
        self.model = model
        self.graph = from_torch(model)
        self.params = ModelParams(model, self.graph)
        self.ctx = GraphContext(self.graph, ranges=dict(ranges), source=self.params, ema_decay=ema_decay)

    @property
    def ranges(self) -> Ranges:
        assert self.ctx.ranges is not None
        return dict(self.ctx.ranges)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_images(images, self.model.arch.image_size).permute(0, 2, 3, 1)  # (B, H, W, C)
        logits = run_graph(self.ctx, x)
        assert logits.shape == (len(images), self.model.arch.num_classes), logits.shape
        return logits


def split_holdout(data: Dataset, fraction: float, seed: int) -> Dataset:
    """The training images as a Dataset whose ``val`` is a seeded random ``fraction`` of them and whose
    ``train`` is the rest; the data set's own val split (the test split) is not used."""
    assert 0.0 < fraction < 1.0, fraction
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data.train_y), generator=gen)
    n_hold = max(1, int(round(fraction * len(perm))))
    hold, rest = perm[:n_hold], perm[n_hold:]
    return replace(
        data,
        train_x=data.train_x[rest],
        train_y=data.train_y[rest],
        val_x=data.train_x[hold],
        val_y=data.train_y[hold],
        name=f"{data.name} (QAT hold-out)",
    )


def calibration_ranges(model: ViT, calibration: torch.Tensor) -> Ranges:
    """The compiler's post-training ranges: calibration images (B, C, H, W) at any resolution."""
    images = resize_images(calibration, model.arch.image_size).numpy()
    return calibrate(from_torch(model), to_hwc(images))


def qat_finetune(
    model: ViT,
    data: Dataset,
    calibration: torch.Tensor,
    cfg: TrainConfig,
    qat: QATConfig = QATConfig(),
    log: Log = print,
) -> QATResult:
    """Quantization-aware fine-tuning of ``model`` in place (see the module docstring); ``cfg`` gives
    the learning rate (small: a tenth of the fine-tuning's), batch, augmentation, label smoothing, seed
    and threads; ``calibration``: the images export calibrates on (the post-training ranges)."""
    arch = model.arch
    assert (data.in_channels, data.num_classes) == (arch.in_channels, arch.num_classes), "data does not fit arch"
    start = time.time()
    split = split_holdout(data, qat.holdout_fraction, cfg.seed)
    steps_per_epoch = math.ceil(len(split.train_y) / cfg.batch_size)
    total, observe_steps = qat.epochs * steps_per_epoch, int(qat.observe_epochs * steps_per_epoch)
    model.cpu().eval()
    with deterministic(cfg.seed, cfg.threads):
        fq = FakeQuantViT(model, calibration_ranges(model, calibration), qat.ema_decay)
        best_acc = evaluate(fq, split, "val")
        best_state, best_ranges, best_epoch = _snapshot(model), fq.ranges, 0
        holdout = [best_acc]
        history: list[dict[str, float]] = []
        log(f"qat   0/{qat.epochs} | post-training start | hold-out fake-quant top-1 {best_acc:.4f}")
        opt = torch.optim.AdamW(fq.params.trained(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
        gen, step = torch.Generator().manual_seed(cfg.seed), 0
        for epoch in range(1, qat.epochs + 1):
            t0, loss_sum = time.time(), 0.0
            for x, y in train_batches(split, cfg, gen, epoch):  # (B, C, H, W), (B,)
                fq.ctx.observing = step < observe_steps
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, 0, cfg)
                loss = F.cross_entropy(fq(x), y, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(fq.params.trained(), cfg.grad_clip)
                opt.step()
                step += 1
                loss_sum += loss.item()
            fq.ctx.observing = False
            acc = evaluate(fq, split, "val")
            holdout.append(acc)
            history.append({"epoch": epoch, "loss": loss_sum / steps_per_epoch, "holdout_top1": acc,
                            "seconds": time.time() - t0})  # fmt: skip
            log(f"qat {epoch:3d}/{qat.epochs} | loss {loss_sum / steps_per_epoch:.4f} | hold-out fake-quant top-1 "
                f"{acc:.4f} | {time.time() - t0:.1f}s")  # fmt: skip
            if acc > best_acc:  # strictly better: ties keep the earlier (post-training first)
                best_acc, best_state, best_ranges, best_epoch = acc, _snapshot(model), fq.ranges, epoch
    model.load_state_dict(best_state)
    model.eval()
    log(f"qat: kept epoch {best_epoch} (hold-out fake-quant top-1 {best_acc:.4f}, start {holdout[0]:.4f})")
    return QATResult(best_ranges, best_epoch, tuple(holdout), tuple(history), time.time() - start)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def ranges_to_json(ranges: Ranges) -> dict[str, list[float]]:
    return {name: [float(lo), float(hi)] for name, (lo, hi) in sorted(ranges.items())}


def ranges_from_json(data: object) -> Ranges:
    """ValueError unless ``data`` maps tensor names to [min, max] pairs of finite numbers."""
    if not isinstance(data, dict):
        raise ValueError("expected an object of tensor name -> [min, max]")
    ranges: Ranges = {}
    for name, pair in data.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair)):
            raise ValueError(f"range of {name!r} is not [min, max]")
        lo, hi = float(pair[0]), float(pair[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"range of {name!r} is not a finite [min, max]: {pair}")
        ranges[str(name)] = (lo, hi)
    return ranges
