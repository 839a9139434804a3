"""Detectron2's yacs ``WarmupMultiStepLR`` as a LazyConfig ``lr_multiplier``."""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def multistep(max_iter: int, steps, gamma: float = 0.1, warmup: int = 100, warmup_factor: float = 0.001):
    """LR factor 1, then x ``gamma`` at each of ``steps``, over ``max_iter`` iterations; linear
    warm-up from ``warmup_factor`` over the first ``warmup`` iterations (0: none)."""
    steps = [int(s) for s in steps]
    scheduler = L(MultiStepParamScheduler)(
        values=[gamma ** i for i in range(len(steps) + 1)], milestones=steps, num_updates=max_iter
    )
    if warmup <= 0:
        return scheduler
    return L(WarmupParamScheduler)(scheduler=scheduler, warmup_length=warmup / max_iter, warmup_factor=warmup_factor)
