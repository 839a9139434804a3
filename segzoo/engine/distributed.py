"""Multi-process training on CPUs (GLOO) as well as GPUs (NCCL).

``train_net.py --num-gpus N`` goes through :func:`launch`: with CUDA available it is Detectron2's
own ``launch`` (one process per GPU, NCCL); without, it starts N CPU processes joined by GLOO
(Detectron2 v0.6's ``launch`` assumes GPUs). Either way every process runs ``main_func(*args)``
with ``detectron2.utils.comm`` set up (world size, ranks, the local process group).

Detectron2's trainer wraps the model with ``DistributedDataParallel(device_ids=[local_rank])``,
which PyTorch refuses for CPU modules; :func:`cpu_ddp` lets it wrap them without device ids.
"""
import contextlib
import datetime

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import detectron2.engine.defaults as d2_defaults
from detectron2.engine.launch import _find_free_port, launch as d2_launch
from detectron2.utils import comm

__all__ = ["launch", "cpu_ddp"]

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def launch(main_func, num_processes: int, num_machines: int = 1, machine_rank: int = 0, dist_url=None,
           args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_processes`` processes per machine (Detectron2's
    ``launch`` signature; ``num_processes`` is its ``num_gpus_per_machine``). A worker that exits
    with a status (``sys.exit(2)`` after a one-line error) makes this process exit with it."""
    world_size = num_machines * num_processes
    if world_size <= 1 or torch.cuda.is_available():
        return d2_launch(main_func, num_processes, num_machines=num_machines, machine_rank=machine_rank,
                         dist_url=dist_url, args=args, timeout=timeout)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url=auto is not supported for multi-machine jobs")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    try:
        mp.start_processes(
            _cpu_worker, nprocs=num_processes, start_method="spawn", daemon=False,
            args=(main_func, world_size, num_processes, machine_rank, dist_url, args, timeout),
        )
    except mp.ProcessExitedException as e:
        raise SystemExit(e.exit_code) from None


def _cpu_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout):
    rank = machine_rank * num_per_machine + local_rank
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=rank,
                            timeout=timeout)
    _set_local_process_group(num_per_machine)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()


def _set_local_process_group(num_per_machine: int) -> None:
    """``comm.get_local_rank()`` / ``get_local_size()`` need the machine's process group."""
    if hasattr(comm, "create_local_process_group"):  # Detectron2 main
        comm.create_local_process_group(num_per_machine)
        return
    num_machines = dist.get_world_size() // num_per_machine  # Detectron2 v0.6
    for i in range(num_machines):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == dist.get_rank() // num_per_machine:
            comm._LOCAL_PROCESS_GROUP = group


@contextlib.contextmanager
def cpu_ddp():
    """While active, Detectron2's ``create_ddp_model`` wraps a model whose parameters are on the
    CPU without ``device_ids`` (GLOO all-reduces CPU tensors); CUDA models are wrapped as
    Detectron2 does."""
    original = d2_defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        if comm.get_world_size() > 1 and "device_ids" not in kwargs:
            param = next(model.parameters(), None)
            if param is None or param.device.type == "cpu":
                kwargs["device_ids"] = None
        return original(model, **kwargs)

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original
