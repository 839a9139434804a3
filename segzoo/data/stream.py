"""A resumable, reproducible training stream.

Detectron2's training loader draws augmentations from each data-loader worker's global RNG and
groups images by aspect ratio after mapping, so what batch ``b`` holds depends on the number of
workers, on timing, and on everything mapped before it; a ``--resume`` restarts the data from the
beginning. Here batch ``b`` of rank ``r`` is a pure function of ``(seed, r, b)``:

* the indices come from Detectron2's training sampler (``DATALOADER.SAMPLER_TRAIN``, shuffled with a
  seed derived from ``SEED``), grouped into batches before mapping, by the aspect ratio of the
  dataset's ``width`` / ``height`` (Detectron2's two groups: landscape and the rest);
* every random draw made while mapping an image (Python ``random``, NumPy's global RNG, torch's CPU
  RNG) is seeded from ``(seed, q)``, ``q`` its position in the sampler's unsharded stream (the
  ``p``-th image of rank ``r`` of ``R`` is ``q = p * R + r``, as Detectron2's samplers shard), so
  N processes draw for an image what one process would; mappers that keep their own generators
  can take :func:`current_sample_seed`;
* batch ``b`` is mapped by worker ``b mod NUM_WORKERS`` and batches arrive in order.

So ``SEED`` >= 0 gives the same batches with any ``NUM_WORKERS``, and a loader started at batch ``b``
(``--resume`` from iteration ``b``) yields what the uninterrupted one would from there.
Differences from Detectron2: grouping uses the annotated image size (a random crop that changes an
image's orientation does not move it to the other group); a mapper that returns ``None`` (no usable
annotations) is replaced by another image drawn from the sample's own seed, as ``MapDataset`` does.
"""
import contextlib
import logging
import random
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["ResumableTrainLoader", "SeededBatchStream", "build_resumable_train_loader", "current_sample_seed",
           "seeded_rng"]

_SAMPLE_SEED: Optional[Tuple[int, ...]] = None


def current_sample_seed() -> Optional[Tuple[int, ...]]:
    """The seed key of the sample being mapped by a :class:`SeededBatchStream` (a tuple usable as
    ``numpy.random.default_rng(key)``), or ``None`` outside of one."""
    return _SAMPLE_SEED


@contextlib.contextmanager
def seeded_rng(key: Sequence[int]):
    """Seed Python's, NumPy's and torch's (CPU) global RNGs from ``key`` inside the block and put
    their previous states back after it, so the caller's random stream is left untouched."""
    global _SAMPLE_SEED
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2)
    py_state, np_state, prev_key = random.getstate(), np.random.get_state(), _SAMPLE_SEED
    with torch.random.fork_rng(devices=[]):
        random.seed(int(words[0]))
        np.random.seed(int(words[1]))
        torch.manual_seed(int(words[0]) << 32 | int(words[1]))
        _SAMPLE_SEED = tuple(int(k) for k in key)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            _SAMPLE_SEED = prev_key


def _landscape(d) -> bool:
    w, h = d.get("width"), d.get("height")
    return w is not None and h is not None and w > h


class SeededBatchStream(IterableDataset):
    """The infinite sequence of mapped batches of one rank, starting at batch ``start``.

    Args:
        dataset: indexable dataset dicts (a list or Detectron2's ``DatasetFromList``).
        sampler: an infinite iterable of indices into ``dataset`` for this rank (Detectron2's
            training samplers, already sharded by rank).
        mapper: dataset dict -> model input, or ``None`` to replace the image.
        batch_size: images per batch of this rank.
        seed, rank, world_size: the sample seeds are ``(seed, position * world_size + rank)``.
        aspect_ratio_grouping: batch landscape and other images separately.
        start: the first batch yielded (``start`` batches of indices are skipped, none are mapped).
    """

    def __init__(self, dataset, sampler, mapper: Callable, batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, aspect_ratio_grouping: bool = True, start: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.dataset, self.sampler, self.mapper = dataset, sampler, mapper
        self.batch_size, self.seed, self.rank, self.world_size = int(batch_size), int(seed), int(rank), int(world_size)
        self.start = int(start)
        # one flag per image, computed once here (a serialized dataset would unpickle every dict)
        self.landscape = (np.array([_landscape(dataset[i]) for i in range(len(dataset))], dtype=bool)
                          if aspect_ratio_grouping else None)

    def index_batches(self) -> Iterator[List[Tuple[int, int]]]:
        """Batches of (position in the stream, dataset index), from batch 0, before mapping."""
        groups = ([], [])
        for pos, idx in enumerate(self.sampler):
            idx = int(idx)
            group = groups[int(self.landscape[idx])] if self.landscape is not None else groups[0]
            group.append((pos, idx))
            if len(group) == self.batch_size:
                yield list(group)
                group.clear()

    def map_one(self, pos: int, idx: int):
        key = (self.seed, pos * self.world_size + self.rank)
        with seeded_rng(key):
            out = self.mapper(self.dataset[idx])
        for attempt in range(1, 1000):
            if out is not None:
                return out
            if attempt == 3:
                logging.getLogger(__name__).warning(
                    "the mapper rejected image %d and 2 replacements (no usable annotations?); still trying", idx)
            idx = int(np.random.default_rng([*key, attempt]).integers(len(self.dataset)))
            with seeded_rng((*key, attempt)):
                out = self.mapper(self.dataset[idx])
        raise RuntimeError("the mapper rejected 1,000 images in a row: the training data has no usable image")

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for b, members in enumerate(self.index_batches()):
            if b >= self.start and (b - self.start) % workers == worker:
                yield [self.map_one(pos, idx) for pos, idx in members]


def _as_is(batch):
    return batch


class ResumableTrainLoader:
    """An iterable of training batches (lists of model inputs) over a :class:`SeededBatchStream`,
    mapped by ``num_workers`` processes. ``start_iter`` (set by the trainer after ``--resume``) is
    read when iteration begins, so the trainer may create its iterator before loading a checkpoint."""

    def __init__(self, make_stream: Callable[[int], SeededBatchStream], num_workers: int = 0):
        self.make_stream, self.num_workers, self.start_iter = make_stream, int(num_workers), 0

    def __iter__(self):
        stream = self.make_stream(self.start_iter)
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=self.num_workers, collate_fn=_as_is,
            # the loader's own seed must not come from (and advance) the trainer's RNG
            generator=torch.Generator().manual_seed(stream.seed),
        )
        yield from loader


def build_resumable_train_loader(cfg, mapper) -> ResumableTrainLoader:
    """The training loader of ``cfg`` (datasets, ``DATALOADER.*``, ``SOLVER.IMS_PER_BATCH``) as a
    :class:`ResumableTrainLoader`. The sampler and the sample seeds derive from ``SEED`` when it is
    >= 0, otherwise from one random draw shared by all processes (then runs are not reproducible,
    but a resumed run still continues the batch sequence instead of restarting it)."""
    from detectron2.data.build import _train_loader_from_config
    from detectron2.data.common import DatasetFromList
    from detectron2.utils import comm

    seed = int(cfg.SEED)
    if seed < 0:
        seed = comm.shared_random_seed()
    world = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by the "
                         f"{world} training processes")
    with seeded_rng((seed, 2 ** 31)):  # the sampler's shuffling seed (Detectron2 draws it from NumPy)
        args = _train_loader_from_config(cfg, mapper=mapper)
    dataset = DatasetFromList(args["dataset"], copy=False)
    sampler, batch = args["sampler"], args["total_batch_size"] // world
    grouping, rank = args["aspect_ratio_grouping"], comm.get_rank()

    def make_stream(start):
        return SeededBatchStream(dataset, sampler, mapper, batch, seed=seed, rank=rank, world_size=world,
                                 aspect_ratio_grouping=grouping, start=start)

    return ResumableTrainLoader(make_stream, num_workers=args["num_workers"])
