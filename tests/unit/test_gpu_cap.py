"""A node given a GPU share on a machine where torch sees no CUDA (the harness's real GPU node
advertises `nvidia.com/gpu` without a device) trains on the CPU and says once why there is no cap."""

from __future__ import annotations

import logging

import pytest
import torch

from red.runtime.node import _cap_gpu_memory


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the cap is set there")
def test_gpu_share_without_cuda_logs_one_line_and_skips_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="red.runtime.node"):
        assert _cap_gpu_memory(0.25) is False
    lines = [r.getMessage() for r in caplog.records if r.name == "red.runtime.node"]
    assert lines == ["GPU share 0.25 given but torch finds no CUDA device: no GPU memory cap, training on CPU"]


@pytest.mark.parametrize("fraction", [0.0, 1.0, 2.0])
def test_whole_or_no_gpu_sets_no_cap_and_says_nothing(fraction: float, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="red.runtime.node"):
        assert _cap_gpu_memory(fraction) is False
    assert not caplog.records
