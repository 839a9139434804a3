"""A few training iterations of several configs in N processes (``segzoo.engine.distributed.launch``),
recording per process and iteration the model's loss dict and, for RetinaNet-based models,
Detectron2's per-process loss normaliser. Used by ``test_distributed.py``:

    python tests/distributed_runs.py JOBS_JSON OUT_DIR NUM_PROCESSES

JOBS_JSON: ``[[name, config_file, [KEY, VALUE, ...]], ...]``; writes ``OUT_DIR/rank<r>.json``
``{name: [{loss: value, ..., "loss_normalizer": n}, ...]}``.
"""
import json
import os
import sys


def record(jobs, out_dir):
    import segzoo  # noqa: F401
    from detectron2.engine import hooks
    from detectron2.utils import comm
    from detectron2.utils.env import seed_all_rng

    from segzoo.config import runtime_config
    from segzoo.engine import Trainer

    rank = comm.get_rank()
    result = {}
    for name, config_file, opts in jobs:
        cfg = runtime_config(config_file, [*opts, "OUTPUT_DIR", os.path.join(out_dir, name)], freeze=True)
        seed_all_rng(cfg.SEED + rank)  # as Detectron2's default_setup
        trainer = Trainer(cfg)
        model = getattr(trainer.model, "module", trainer.model)
        steps = []
        handle = model.register_forward_hook(lambda m, i, out: steps.append({k: float(v) for k, v in out.items()}))

        def after_step(_):
            if hasattr(model, "loss_normalizer"):
                steps[-1]["loss_normalizer"] = float(model.loss_normalizer)

        trainer.register_hooks([hooks.CallbackHook(after_step=after_step)])
        trainer.resume_or_load(resume=False)
        trainer.train()
        handle.remove()
        result[name] = steps
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def main(argv):
    from segzoo.engine.distributed import launch

    jobs_file, out_dir, n = argv
    with open(jobs_file) as f:
        jobs = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    launch(record, int(n), dist_url="auto", args=(jobs, out_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
