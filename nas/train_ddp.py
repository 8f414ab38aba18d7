"""Supernet training on several processes (torch DistributedDataParallel; gloo on CPU, nccl on GPU).

    torchrun --nproc_per_node=2 -m mcuformer.nas.train_ddp --data digits --epochs 30 --out runs/supernet

Every rank builds the same supernet (DDP also broadcasts rank 0's weights), draws the same global
batches, augmentations and sandwich subnets from the same seeded generators, and runs its share
``batch[rank::world]`` of each batch; DDP all-reduces (averages) the gradients, so all ranks take
identical optimizer steps. Rank 0 writes the checkpoint every epoch (``--resume`` continues it) and
the final supernet; every rank writes ``rank<r>.json`` with the digest of the subnets it sampled and
of its final weights, so a run can be checked for agreement across ranks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from mcuformer.arch import SearchSpace
from mcuformer.data import load_dataset
from mcuformer.nas.data_pipeline import stream_folder
from mcuformer.nas.recipe import lr_for_width
from mcuformer.nas.supernet import Supernet
from mcuformer.nas.train import TrainConfig, train_supernet
from mcuformer.spaces import load_space, preset_for

TINY_SPACE = SearchSpace(
    image_sizes=(8,), patch_sizes=(2, 4), embed_dims=(8, 16), depths=(1, 2), num_heads=(2,), mlp_ratios=(1.0, 2.0)
)


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mcuformer.nas.train_ddp", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--out", required=True, help="directory for supernet.pt, the checkpoint and rank<r>.json")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64, help="global batch (split over the ranks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--space", help="a preset (`mcuformer spaces`), a .json/.toml file or 'tiny' (default: by size)")
    p.add_argument("--stream", action="store_true", help="--data is a folder: stream the training images from disk")
    p.add_argument("--image-size", type=int, help="resize a folder's images on load (default: the space's largest)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per rank (with --stream)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (tests)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--stop-after-epoch", type=int, default=0, help="stop early, as if killed (tests)")
    args = p.parse_args(argv)

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = torch.device("cpu")
    if backend == "nccl":  # (not exercised by the tests: the CI machines have no GPU)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = args.image_size
    if size is None and args.space not in (None, "tiny"):
        size = max(load_space(args.space, 1, 2).image_sizes)
    stream = None
    if args.stream:  # the same pipeline as in memory, through a DataLoader with a DistributedSampler
        data, stream = stream_folder(Path(args.data), size or 224, seed=args.seed)
        if args.train_limit:
            stream.files = stream.files[: args.train_limit]
    else:
        data = load_dataset(args.data, seed=args.seed, image_size=size if Path(args.data).is_dir() else None)
        if args.train_limit:
            data = replace(data, train_x=data.train_x[: args.train_limit], train_y=data.train_y[: args.train_limit])
    if args.space == "tiny":
        space = replace(TINY_SPACE, in_channels=data.in_channels, num_classes=data.num_classes)
    else:
        space = load_space(args.space or preset_for(data.image_size), data.in_channels, data.num_classes)
    torch.manual_seed(args.seed)
    supernet = Supernet(space)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, threads=args.threads,
                      device=str(device), loader_workers=args.workers,
                      lr=lr_for_width(space.largest().embed_dim))  # fmt: skip
    log = print if rank == 0 else (lambda _: None)
    log(f"DDP ({backend}): {world} ranks, global batch {cfg.batch_size}, {data.summary()}")
    ckpt = str(out / "checkpoint.pt")
    result = train_supernet(
        supernet, data, cfg, log, ckpt, resume=args.resume, stop_after_epoch=args.stop_after_epoch, stream=stream
    )
    report = {
        "rank": rank,
        "world": world,
        "backend": backend,
        "steps": result["steps"],
        "subnets_digest": result["subnets_digest"],
        "weights_digest": weights_digest(supernet),
        "val_acc_largest": result["val_acc_largest"],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report, indent=2) + "\n")
    if rank == 0:
        torch.save({"space": space.to_json(), "model": supernet.cpu().state_dict()}, out / "supernet.pt")
        log(f"wrote {out}/supernet.pt")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
