"""Train and evaluate any segzoo (or plain Detectron2) config.

``python -m segzoo.train_net`` (or the repository's ``train_net.py``), same flags as Detectron2's
tools/train_net.py:

    python train_net.py --config-file configs/MaskRCNN/shapes_R_18_FPN.yaml
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume            # continue from last_checkpoint
    python train_net.py --config-file ... --num-gpus 8        # DDP, as in Detectron2 (NCCL)
    python train_net.py --config-file ... --num-gpus 2        # without GPUs: 2 CPU processes (GLOO)

Your own COCO-format data, no Python needed:

    python train_net.py --config-file ... \
        --register-coco mydata_train path/to/train.json path/to/train_images \
        --register-coco mydata_val path/to/val.json path/to/val_images \
        DATASETS.TRAIN "('mydata_train',)" DATASETS.TEST "('mydata_val',)" \
        MODEL.ROI_HEADS.NUM_CLASSES 3
"""
import sys

import segzoo  # noqa: F401  (Detectron2 compat, datasets, shared modules; must come first)
from segzoo.plugins import import_plugins

import_plugins()  # every installed plugin registers its models

import detectron2.utils.comm as comm  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402

from segzoo.engine import Trainer, setup_cfg  # noqa: E402
from segzoo.engine.distributed import launch  # noqa: E402
from segzoo.errors import UserError  # noqa: E402


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            from detectron2.evaluation import verify_results

            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        metavar=("NAME", "INSTANCES_JSON", "IMAGE_DIR"),
        help="register a COCO-format instances dataset under NAME (repeatable)",
    )
    return parser


def _run_main(args):
    try:
        return main(args)
    except UserError as e:
        # DataLoader workers re-raise with their traceback in the message: keep the last line.
        lines = [l for l in str(e).splitlines() if l.strip()]
        msg = lines[-1].split("UserError: ", 1)[-1] if lines else repr(e)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def cli(argv=None):
    args = get_parser().parse_args(argv)
    print("Command Line Args:", args)
    launch(
        _run_main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
