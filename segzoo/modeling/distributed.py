"""Loss normalisers that must agree across workers."""
import torch
import torch.distributed as dist
from torch import Tensor

from detectron2.utils import comm

__all__ = ["reduce_sum", "reduce_mean"]


def reduce_sum(value) -> Tensor:
    """Sum of ``value`` (a number or tensor) over all workers, as a float tensor."""
    t = value.detach().clone().float() if isinstance(value, Tensor) else torch.tensor(float(value))
    if comm.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def reduce_mean(value) -> float:
    """Mean of ``value`` over all workers, as a Python float."""
    return reduce_sum(value).item() / comm.get_world_size()
