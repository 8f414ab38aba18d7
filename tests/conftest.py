"""Session-wide fixtures: what several test files need and is slow to make, made once per session."""

from __future__ import annotations

import pytest

from tests import kernel_harness as kh


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> kh.Harness:
    """The C kernels + driver (tests/c/kernel_harness.c) built once with ASan + UBSan; skips without a
    host C compiler. Every run writes its own numbered files in the harness's folder."""
    return kh.harness_or_skip(tmp_path_factory, "kernel_harness")
