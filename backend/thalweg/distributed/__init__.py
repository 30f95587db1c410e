"""Several GPUs (or CPU processes) of one host: the river forest's basins spread over ranks with
``torch.distributed`` (NCCL on CUDA, gloo on the CPU), results identical to one process. See docs/gpus.md.

- :func:`route`: route over ``world_size`` processes (``thalweg route --gpus N``);
- :func:`fit`: data-parallel training of a parameter model, gradients all-reduced over ranks;
- :func:`launch`: run a function in one process per GPU, torchrun-style, with NVLink multicast off
  (:data:`NO_MULTICAST`) in every process;
- :func:`plan`: which rank routes which pieces, stage by stage.
"""
from __future__ import annotations

from .launch import NO_MULTICAST, RankInfo, launch, resolve_world
from .routing import RankTimes, plan, route
from .training import FitHistory, fit

__all__ = ["NO_MULTICAST", "RankInfo", "RankTimes", "FitHistory", "fit", "launch", "plan", "resolve_world", "route"]
