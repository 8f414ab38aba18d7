"""Supernet training with the sandwich rule and in-place distillation, and fine-tuning of the winner.

Each step runs four subnets on the same batch and takes one optimizer step on the summed loss:
the largest (cross-entropy on the labels), the smallest and ``num_random`` random subnets (KL
divergence to the largest's detached soft predictions). AdamW, linear warmup then cosine decay.
Seeded and deterministic for a fixed thread count; checkpointed every epoch and resumable to the
bit; the same loop runs under torchrun (DDP, see ``nas.train_ddp``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.arch import ArchConfig
from mcuformer.data import Dataset
from mcuformer.errors import UserError
from mcuformer.model import ViT, resize_images
from mcuformer.nas.data_pipeline import Augment, augment, make_loader, to_float
from mcuformer.nas.supernet import Supernet

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-3
    min_lr: float = 5e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    num_random: int = 2  # sandwich: largest + smallest + this many random subnets per step
    augment_shift: int = 0  # random crop after padding by this many pixels (0 = off)
    flip: bool = False  # random horizontal flips (never for digits: see nas.data_pipeline.default_augment)
    label_smoothing: float = 0.0  # on the cross-entropy with the labels
    distill_weight: float = 0.0  # weight of the KL to a teacher's soft predictions (needs a teacher)
    distill_temperature: float = 2.0
    device: str = "cpu"  # "cpu" or "cuda" (resolved from --device auto by the caller)
    amp: bool = True  # bfloat16 autocast on CUDA (no effect on CPU)
    loader_workers: int = 0  # DataLoader worker processes for a streamed training set
    seed: int = 0
    # torch threads (0 = all cores). One by default: these models are tiny, and on a shared 2-core machine two
    # OpenMP threads per process collapse (measured: 40 s vs 5 s per supernet epoch under load).
    threads: int = 1


@contextmanager
def deterministic(seed: int, threads: int = 0) -> Iterator[None]:
    """Seed torch, use deterministic kernels and a fixed thread count; restore the old settings after."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0])
        torch.set_num_threads(old[1])


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering 0..n-1 once (the last batch may be smaller)."""
    perm = torch.randperm(n, generator=gen)
    yield from perm.split(batch_size)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices/kernels/embeddings (dim >= 2), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.min_lr at ``total`` steps."""
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def train_batches(
    data: Dataset, cfg: TrainConfig, gen: torch.Generator, epoch: int, stream=None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of augmented float training batches (x (B, C, H, W), y (B,)) on ``cfg.device``, this
    rank's share. In memory (uint8 or float images): a seeded permutation from ``gen``; every rank draws
    the same global batch and augmentation, then takes ``batch[rank::world]``. With ``stream`` (a
    ``FolderStream``): a DataLoader with ``cfg.loader_workers`` worker processes, sharded per rank by a
    DistributedSampler under torchrun; the augmentation still draws from ``gen``."""
    rank, world = dist_info()
    aug = Augment(crop_pad=cfg.augment_shift, flip=cfg.flip)
    device = torch.device(cfg.device)
    if stream is None:
        for idx in batches(len(data.train_y), cfg.batch_size, gen):
            x = augment(to_float(data.train_x[idx]), aug, gen)[rank::world]
            yield x.to(device, non_blocking=True), data.train_y[idx][rank::world].to(device, non_blocking=True)
        return
    for xb, yb in make_loader(stream, cfg.batch_size, cfg.seed, cfg.loader_workers, epoch):
        yield augment(to_float(xb), aug, gen).to(device, non_blocking=True), yb.to(device, non_blocking=True)


@contextmanager
def autocast(cfg: TrainConfig) -> Iterator[None]:
    """bfloat16 mixed precision on CUDA when ``cfg.amp``; nothing on CPU."""
    if cfg.device.startswith("cuda") and cfg.amp:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KD term: T^2 * KL(softmax(teacher / T) || softmax(student / T))."""
    t = temperature
    target = (teacher_logits.detach().float() / t).softmax(dim=-1)
    return F.kl_div((logits.float() / t).log_softmax(dim=-1), target, reduction="batchmean") * t * t


def supervised_loss(
    logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, teacher: nn.Module | None
) -> torch.Tensor:
    """Cross-entropy with the labels (label smoothing), mixed with distillation from ``teacher``."""
    ce = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    if teacher is None or cfg.distill_weight <= 0:
        return ce
    with torch.no_grad():
        teacher_logits = teacher(x)
    kd = distill_loss(logits, teacher_logits, cfg.distill_temperature)
    return (1.0 - cfg.distill_weight) * ce + cfg.distill_weight * kd


@torch.no_grad()
def evaluate(
    model_fn: Callable[[torch.Tensor], torch.Tensor], data: Dataset, split: str = "val", device: str = "cpu"
) -> float:
    """Top-1 accuracy of ``model_fn`` ((B, C, H, W) float images -> (B, K) logits) on a split; images
    are converted from uint8 per chunk of 512 and moved to ``device`` (the model's)."""
    assert split in ("train", "val"), split
    x, y = (data.val_x, data.val_y) if split == "val" else (data.train_x, data.train_y)
    correct = 0
    for i in range(0, len(y), 512):
        logits = model_fn(to_float(x[i : i + 512]).to(device)).float().cpu()  # (B, K)
        assert logits.shape == (len(y[i : i + 512]), data.num_classes), logits.shape
        correct += int((logits.argmax(dim=-1) == y[i : i + 512]).sum())
    return correct / len(y)


class Sandwich(nn.Module):
    """One training step's loss, as ONE forward (so DDP sees one forward per backward): the largest
    subnet's cross-entropy on the labels, plus the KL divergence of every other subnet to the
    largest's detached soft predictions (in-place distillation)."""

    def __init__(self, supernet: Supernet, cfg: TrainConfig | None = None, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.supernet = supernet
        self.cfg = cfg or TrainConfig()
        self._teacher = [teacher]  # in a list: not a submodule, so DDP never sees its (frozen) parameters

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, archs: list[ArchConfig]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.supernet(x, archs[0]).float()  # (B, K), the largest subnet
        ce = supervised_loss(logits, x, y, self.cfg, self._teacher[0])
        teacher = logits.detach().softmax(dim=-1)  # in-place distillation target
        kds = [
            F.kl_div(self.supernet(x, a).float().log_softmax(dim=-1), teacher, reduction="batchmean") for a in archs[1:]
        ]
        kd = torch.stack(kds) if kds else logits.new_zeros(1)
        return ce + kd.sum(), ce.detach(), kd.detach().mean()


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same directory, then os.replace: never a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str, cfg: TrainConfig) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = {k: v for k, v in state["config"].items() if k != "threads"}
    now = {k: v for k, v in asdict(cfg).items() if k != "threads"}
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in now if saved.get(k) != now.get(k)}
        raise UserError(f"checkpoint {path} was written with other training settings {diff}; start a new run")
    return state


def train_supernet(
    supernet: Supernet,
    data: Dataset,
    cfg: TrainConfig,
    log: Log = print,
    checkpoint: str | None = None,
    resume: bool = False,
    stop_after_epoch: int = 0,
    teacher: nn.Module | None = None,
    stream=None,
) -> dict[str, Any]:
    """Sandwich-rule training. With ``checkpoint`` the full training state (weights, optimizer, step,
    python/torch RNG states, data-order generator, history) is written atomically after every epoch;
    ``resume`` continues from it and ends bit-identical to an uninterrupted run. Under torchrun each
    rank takes its share of every global batch (all ranks draw the same batches, augmentations and
    subnets from the same seeded generators) and DDP all-reduces the gradients. ``stop_after_epoch``
    (> 0) stops early as an interrupted run would (the schedule still spans ``cfg.epochs``)."""
    space = supernet.space
    assert (data.in_channels, data.num_classes) == (space.in_channels, space.num_classes), "data does not fit space"
    rank, world = dist_info()
    assert cfg.batch_size >= world, (cfg.batch_size, world)
    largest, smallest = space.largest(), space.smallest()
    n = len(stream) if stream is not None else len(data.train_y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    step_losses: list[float] = []  # cross-entropy of the largest subnet, per step (this rank's share)
    subnets = ""  # hash chain over every subnet sampled, in order: equal on all ranks
    start = time.time()
    with deterministic(cfg.seed, cfg.threads):
        gen, rng = torch.Generator().manual_seed(cfg.seed), random.Random(cfg.seed)
        opt = make_optimizer(supernet, cfg)
        step, first_epoch = 0, 1
        if resume and checkpoint and os.path.exists(checkpoint):
            state = load_checkpoint(checkpoint, cfg)
            supernet.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["data_gen"])
            rng.setstate(_to_tuple(state["rng_python"]))
            torch.set_rng_state(state["rng_torch"])
            step, first_epoch = state["step"], state["epoch"] + 1
            history, step_losses = state["history"], state["step_losses"]
            subnets = state["subnets"]
            log(f"resumed from {checkpoint} after epoch {state['epoch']} (step {step})")
        supernet.to(cfg.device)
        if teacher is not None:
            teacher.to(cfg.device).eval()
        sandwich: nn.Module = Sandwich(supernet, cfg, teacher)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Every step runs the largest subnet, which touches every parameter, so no parameter is
            # ever unused and DDP's extra graph traversal (find_unused_parameters) is not needed.
            sandwich = DistributedDataParallel(sandwich, find_unused_parameters=False)
        last_epoch = min(cfg.epochs, stop_after_epoch) if stop_after_epoch > 0 else cfg.epochs
        for epoch in range(first_epoch, last_epoch + 1):
            t0, ce_sum, kd_sum = time.time(), 0.0, 0.0
            supernet.train()
            for x, y in train_batches(data, cfg, gen, epoch, stream):  # (B / world, C, H, W), (B / world,)
                assert len(y) > 0, f"a batch of {cfg.batch_size} images cannot be split over {world} ranks"
                archs = [largest, smallest] + [supernet.sample(rng) for _ in range(cfg.num_random)]
                subnets = hashlib.sha256((subnets + "|".join(a.short() for a in archs)).encode()).hexdigest()
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, cfg)
                opt.zero_grad(set_to_none=True)
                with autocast(cfg):
                    loss, ce, kd = sandwich(x, y, archs)
                loss.backward()  # under DDP: gradients averaged over ranks here
                nn.utils.clip_grad_norm_(supernet.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                step_losses.append(ce.item())
                ce_sum, kd_sum = ce_sum + ce.item(), kd_sum + kd.item()
            supernet.eval()
            acc_l = evaluate(lambda im: supernet(im, largest), data, device=cfg.device)
            acc_s = evaluate(lambda im: supernet(im, smallest), data, device=cfg.device)
            row = {"epoch": epoch, "loss": ce_sum / steps_per_epoch, "kd": kd_sum / steps_per_epoch}
            row |= {"val_acc_largest": acc_l, "val_acc_smallest": acc_s, "seconds": time.time() - t0}
            history.append(row)
            if checkpoint and rank == 0:
                state = {"config": asdict(cfg), "epoch": epoch, "step": step, "history": history}
                state |= {"model": supernet.state_dict(), "optimizer": opt.state_dict(), "data_gen": gen.get_state()}
                state |= {"rng_python": rng.getstate(), "rng_torch": torch.get_rng_state()}
                save_checkpoint(checkpoint, state | {"step_losses": step_losses, "subnets": subnets})
            if rank == 0:
                log(
                    f"epoch {epoch:3d}/{cfg.epochs} | loss {row['loss']:.4f} kd {row['kd']:.4f} | "
                    f"val acc largest {acc_l:.3f} smallest {acc_s:.3f} | {row['seconds']:.1f}s"
                )
    if world == 1:  # the search and the export run on the CPU (under DDP the caller owns the devices)
        supernet.cpu()
        if teacher is not None:
            teacher.cpu()
    return {
        "epochs": cfg.epochs,
        "steps": step,
        "final_loss": history[-1]["loss"] if history else float("nan"),
        "val_acc_largest": history[-1]["val_acc_largest"] if history else float("nan"),
        "val_acc_smallest": history[-1]["val_acc_smallest"] if history else float("nan"),
        "seconds": time.time() - start,
        "history": history,
        "step_losses": step_losses,
        "subnets_digest": subnets,
    }


def _to_tuple(value: Any) -> Any:
    """random.Random.getstate() after a round trip through torch.save (lists back to tuples)."""
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def finetune(
    model: ViT, data: Dataset, cfg: TrainConfig, log: Log = print, teacher: nn.Module | None = None, stream=None
) -> dict[str, Any]:
    """Fine-tuning of an extracted static ViT (e.g. the search winner): cross-entropy with the labels
    (label smoothing), optionally mixed with distillation from ``teacher`` (see ``train_classifier``)."""
    arch = model.arch
    assert (data.in_channels, data.num_classes) == (arch.in_channels, arch.num_classes), "data does not fit arch"

    def forward(images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) at data res -> (B, K)
        return model(resize_images(images, arch.image_size))

    return train_classifier(model, forward, data, cfg, log, teacher, "finetune", stream)


def train_classifier(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset,
    cfg: TrainConfig,
    log: Log = print,
    teacher: nn.Module | None = None,
    name: str = "train",
    stream=None,
) -> dict[str, Any]:
    """Train ``model`` (``forward``: (B, C, H, W) float images at the data's resolution -> (B, K)) with
    AdamW, warmup + cosine, the configured augmentation, label smoothing and (with ``teacher``, a model
    of the same input) distillation; on ``cfg.device`` (bfloat16 autocast on CUDA), back on the CPU at
    the end. Seeded and deterministic for a fixed thread count."""
    n = len(stream) if stream is not None else len(data.train_y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    start = time.time()
    history: list[dict[str, float]] = []
    device = torch.device(cfg.device)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    with deterministic(cfg.seed, cfg.threads):
        acc_before = evaluate(forward, data, device=cfg.device)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = make_optimizer(model, cfg)
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            t0, loss_sum = time.time(), 0.0
            model.train()
            for x, y in train_batches(data, cfg, gen, epoch, stream):  # (B, C, H, W), (B,)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, cfg)
                with autocast(cfg):
                    loss = supervised_loss(forward(x), x, y, cfg, teacher)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                loss_sum += loss.item()
            model.eval()
            acc = evaluate(forward, data, device=cfg.device)
            history.append(
                {"epoch": epoch, "loss": loss_sum / steps_per_epoch, "val_acc": acc, "seconds": time.time() - t0}
            )
            log(
                f"{name} {epoch:3d}/{cfg.epochs} | loss {loss_sum / steps_per_epoch:.4f} | val acc {acc:.3f} | "
                f"{time.time() - t0:.1f}s"
            )
    model.cpu()
    if teacher is not None:
        teacher.cpu()
    return {
        "val_acc_before": acc_before,
        "val_acc": history[-1]["val_acc"] if history else acc_before,
        "seconds": time.time() - start,
        "history": history,
    }
