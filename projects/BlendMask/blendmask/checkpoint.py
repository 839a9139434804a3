"""AdelaiDet checkpoint compatibility.

Our module tree mirrors AdelaiDet's (``backbone``, ``top_layer``, ``basis_module.refine``
/ ``tower`` / ``seg_head``, FCOS head towers and branches) except that the FCOS head lives
at ``head.`` (Detectron2's ``DenseDetector`` convention) instead of
``proposal_generator.fcos_head.``. :func:`convert_adelaidet_state_dict` renames an
AdelaiDet BlendMask / FCOS state dict to ours; BlendMask and FCOS models also apply it
automatically when loading (``MODEL.WEIGHTS: adelaidet_blendmask_R_50_3x.pth`` works).
:func:`convert_checkpoint_file` (``python -m blendmask.convert IN.pth OUT.pth``, also
tools/convert_adelaidet_blendmask.py) stores a converted checkpoint.
"""
import logging
import os
from collections import OrderedDict
from typing import Dict, Mapping, Tuple

__all__ = ["convert_adelaidet_state_dict", "convert_checkpoint_file", "is_adelaidet_state_dict",
           "register_adelaidet_load_hook"]


_PREFIXES = (
    ("proposal_generator.fcos_head.", "head."),
)
# AdelaiDet keys with no counterpart here (buffers of its loss modules)
_DROP_PREFIXES = ("proposal_generator.fcos_outputs.",)


def is_adelaidet_state_dict(state_dict: Mapping) -> bool:
    return any(k.startswith("proposal_generator.fcos_head.") for k in state_dict)


def convert_adelaidet_state_dict(state_dict: Mapping) -> Dict:
    """Rename AdelaiDet keys to ours; keys that are already ours pass unchanged."""
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith(_DROP_PREFIXES):
            continue
        for old, new in _PREFIXES:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def register_adelaidet_load_hook(module) -> None:
    """Make ``module.load_state_dict`` (and Detectron2's checkpointer) accept AdelaiDet keys.

    As Detectron2's checkpointer does for its own keys, renamed weights whose shape differs
    from the model's (e.g. an 80-class COCO classifier loaded for fine-tuning on 5 classes)
    are skipped with a warning and left at their initial values."""

    def hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        sub = {k[len(prefix):]: k for k in list(state_dict) if k.startswith(prefix)}
        if not is_adelaidet_state_dict(sub):
            return
        converted = convert_adelaidet_state_dict({k: state_dict[full] for k, full in sub.items()})
        for full in sub.values():
            del state_dict[full]
        own = module.state_dict()
        for k, v in converted.items():
            if k in own and tuple(own[k].shape) != tuple(v.shape):
                logging.getLogger(__name__).warning(
                    "AdelaiDet weight %s has shape %s, the model's has %s: skipped",
                    k, tuple(v.shape), tuple(own[k].shape),
                )
                continue
            state_dict[prefix + k] = v

    module._register_load_state_dict_pre_hook(hook)


def convert_checkpoint_file(input_path: str, output_path: str) -> Tuple[int, int]:
    """Write ``output_path``: the AdelaiDet checkpoint ``input_path`` with our key names (as
    ``{"model": ..., "matching_heuristics": False}``). Returns the key counts before and after;
    a missing file or one without AdelaiDet FCOS head keys is a :class:`segzoo.errors.UserError`."""
    import torch

    from segzoo.errors import UserError

    if not os.path.isfile(input_path):
        raise UserError(f"checkpoint not found: {input_path}")
    ckpt = torch.load(input_path, map_location="cpu", weights_only=False)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not is_adelaidet_state_dict(state):
        raise UserError(f"{input_path} has no AdelaiDet FCOS head keys (proposal_generator.fcos_head.*)")
    converted = convert_adelaidet_state_dict(state)
    torch.save({"model": converted, "matching_heuristics": False}, output_path)
    return len(state), len(converted)
