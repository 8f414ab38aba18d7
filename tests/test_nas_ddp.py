"""Supernet training under torchrun: 2 CPU processes (gloo, 127.0.0.1 only) must sample the same
subnets every step and end with identical weights; a resumed DDP run ends where an unbroken one does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, epochs: int, *extra: str) -> list[dict]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "mcuformer.nas.train_ddp", "--space", "tiny", "--epochs", str(epochs), "--batch-size", "32",
        "--train-limit", "96", "--threads", "1", "--out", str(out), *extra,
    ]  # fmt: skip
    env = os.environ | {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_ddp_ranks_agree_and_resume(tmp_path: Path) -> None:
    r0, r1 = torchrun(tmp_path / "a", 2)
    assert (r0["world"], r1["world"], r0["backend"]) == (2, 2, "gloo")
    assert r0["steps"] == r1["steps"] == 2 * 3  # 96 images / global batch 32, 2 epochs
    assert r0["subnets_digest"] == r1["subnets_digest"]  # same subnets sampled at every step
    assert r0["weights_digest"] == r1["weights_digest"]  # gradients all-reduced: identical weights
    saved = torch.load(tmp_path / "a" / "supernet.pt", weights_only=True)
    initial = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert initial["epoch"] == 2 and saved["model"].keys() == initial["model"].keys()

    # stopped after epoch 1 of 2, then resumed from the checkpoint: the same subnets and weights as the unbroken run
    torchrun(tmp_path / "b", 2, "--stop-after-epoch", "1")
    b0, b1 = torchrun(tmp_path / "b", 2, "--resume")
    assert b0["weights_digest"] == b1["weights_digest"] == r0["weights_digest"]
    assert b0["subnets_digest"] == r0["subnets_digest"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_ddp_streams_an_image_folder_with_a_distributed_sampler(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(20):  # 10x12 images, resized on load to 8x8 (the tiny space's resolution)
            Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    r0, r1 = torchrun(tmp_path / "s", 1, "--data", str(tmp_path / "imgs"), "--stream", "--image-size", "8",
                      "--workers", "1")  # fmt: skip
    assert r0["steps"] == r1["steps"] == 1  # 32 training images / global batch 32: each rank loads its 16
    assert r0["subnets_digest"] == r1["subnets_digest"] and r0["weights_digest"] == r1["weights_digest"]
