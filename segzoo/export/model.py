"""Export of a Detectron2 model (Detectron2's own or a plugin's) to TorchScript or ONNX by
tracing, and a predictor that runs the exported file like Detectron2's ``DefaultPredictor``.

The exported graph maps one image ``(3, H, W)`` float32, already resized to the model's test
size and in its input format, to the raw detections of ``model.inference(batched_inputs,
do_postprocess=False)`` (Detectron2's convention, which the plugins follow) as plain tensors:

==========  ==================================================================
``boxes``   ``(n, 4)`` float32 XYXY in the input image's pixels
``scores``  ``(n,)`` float32
``classes`` ``(n,)`` int64
``masks``   ``(n, 1, M, M)`` float32 box-relative mask probabilities (models with masks)
==========  ==================================================================

What depends on the original image size (resizing the input, scaling boxes back, pasting
masks into the image) stays outside the graph, in :class:`ExportedPredictor`, exactly as
``detector_postprocess`` does it for the eager model. A model whose masks are made directly
at the output size (``model.masks_at_output_size``, e.g. RDSNet) is exported with a second
input, ``output_size`` (int64 ``[height, width]``), and its outputs are final: boxes at that
size, ``masks`` ``(n, height, width)`` bool. ``export.json`` beside the model holds what the
predictor needs (inputs, outputs, input format, test resize).
"""
import contextlib
import inspect
import json
import logging
import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import UserError
from .onnx_ops import register_onnx_symbolics

__all__ = ["EXPORT_FORMATS", "EXPORT_METHODS", "OUTPUT_NAMES", "ExportAdapter", "ExportedPredictor",
           "check_raw_inference", "export_metadata", "export_model", "raw_inference", "resize_for_test"]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("torchscript", "onnx")
EXPORT_METHODS = ("tracing", "scripting")
OUTPUT_NAMES = ("boxes", "scores", "classes", "masks")
ONNX_OPSET = 18
_FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}


def check_raw_inference(model: nn.Module) -> None:
    """Raise one clear error unless ``model`` has ``inference(batched_inputs, do_postprocess)``."""
    inference = getattr(model, "inference", None)
    if inference is None or "do_postprocess" not in inspect.signature(inference).parameters:
        raise UserError(
            f"{type(model).__name__} cannot be exported: it has no inference(batched_inputs, "
            "do_postprocess=False) giving its raw detections"
        )


def raw_inference(model: nn.Module, batched_inputs: List[Dict[str, Tensor]]):
    """``model.inference(batched_inputs, do_postprocess=False)``: detections in the input size,
    masks (if any) box-relative. Call :func:`check_raw_inference` first for a clear error on a
    model without it."""
    return model.inference(batched_inputs, do_postprocess=False)


class ExportAdapter(nn.Module):
    """``image (3, H, W) -> (boxes, scores, classes[, masks])`` around a Detectron2 model in eval
    mode (see the module docstring)."""

    def __init__(self, model: nn.Module, with_masks: bool):
        super().__init__()
        check_raw_inference(model)
        self.model = model.eval()
        self.with_masks = with_masks
        self.sized = bool(getattr(model, "masks_at_output_size", False))

    def forward(self, image: Tensor, output_size: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        inputs = {"image": image}
        if self.sized:
            inputs.update(height=output_size[0], width=output_size[1])
        det = raw_inference(self.model, [inputs])[0]
        out = (det.pred_boxes.tensor, det.scores, det.pred_classes)
        if self.with_masks:
            out = out + (det.pred_masks,)
        return out

    @property
    def input_names(self) -> Tuple[str, ...]:
        return ("image", "output_size") if self.sized else ("image",)

    @property
    def output_names(self) -> Tuple[str, ...]:
        return OUTPUT_NAMES if self.with_masks else OUTPUT_NAMES[:3]

    def example_inputs(self, image: Tensor) -> Tuple[Tensor, ...]:
        return (image, torch.tensor(image.shape[1:], dtype=torch.int64)) if self.sized else (image,)


class _ScriptableRCNN(nn.Module):
    """The adapter for scripting (GeneralizedRCNN with masks): same outputs as tracing's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        det = self.model.inference([{"image": image}], do_postprocess=False)[0]
        return det.pred_boxes.tensor, det.scores, det.pred_classes, det.pred_masks


class _ScriptableRCNNBoxes(_ScriptableRCNN):
    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        det = self.model.inference([{"image": image}], do_postprocess=False)[0]
        return det.pred_boxes.tensor, det.scores, det.pred_classes


def _script(model: nn.Module, with_masks: bool):
    """Detectron2's scripting (``scripting_with_instances``) of a GeneralizedRCNN."""
    from detectron2.modeling import GeneralizedRCNN

    if not isinstance(model, GeneralizedRCNN):
        raise UserError(f"scripting supports Detectron2's GeneralizedRCNN (Mask R-CNN) only, not "
                        f"{type(model).__name__}: use --export-method tracing")
    try:
        from detectron2.export import scripting_with_instances
    except ImportError as e:
        raise UserError(f"scripting needs detectron2.export, which does not import here ({e}; Detectron2 v0.6 "
                        "needs caffe2 for it): use --export-method tracing, or upstream Detectron2") from None
    from detectron2.structures import Boxes

    from ..ops import load_extension

    load_extension()  # the scripted pooler calls torch.ops.segzoo.* directly
    fields = {"proposal_boxes": Boxes, "objectness_logits": Tensor, "pred_boxes": Boxes, "scores": Tensor,
              "pred_classes": Tensor, "pred_masks": Tensor}
    adapter = _ScriptableRCNN(model) if with_masks else _ScriptableRCNNBoxes(model)
    return scripting_with_instances(adapter, fields)


def _with_masks(model: nn.Module, image: Tensor) -> bool:
    check_raw_inference(model)
    with torch.no_grad():
        det = raw_inference(model, [{"image": image}])[0]
    want = 3 if getattr(model, "masks_at_output_size", False) else 4
    if det.has("pred_masks") and det.pred_masks.dim() != want:
        raise UserError(
            f"{type(model).__name__}: raw masks must be " + ("(n, H, W) image masks" if want == 3 else
                                                             "(n, 1, M, M) box-relative maps")
            + f" to be exported, got shape {tuple(det.pred_masks.shape)}"
        )
    return det.has("pred_masks")


@contextlib.contextmanager
def _quiet():
    """Tracing warns on every shape read as a number and torch deprecates its TorchScript and
    TorchScript-based ONNX paths; the parity tests (tests/test_export_*.py) are what checks the
    traced graphs, so these warnings are not shown to users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*(torch\.jit|TorchScript|torch\.onnx).*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*(legacy TorchScript-based ONNX|will be removed).*")
        yield


def export_model(model: nn.Module, image: Tensor, output_dir: str, format: str = "torchscript",
                 method: str = "tracing", metadata: Optional[Dict] = None) -> str:
    """Export ``model`` (eval mode) traced on ``image`` (3, H, W) to ``output_dir``; returns the
    model file's path. ``metadata`` (input format, test resize: :func:`export_metadata`) is
    written to ``export.json`` with the outputs."""
    if format not in EXPORT_FORMATS:
        raise UserError(f"format must be one of {list(EXPORT_FORMATS)}, got {format!r}")
    if method not in EXPORT_METHODS:
        raise UserError(f"export method must be one of {list(EXPORT_METHODS)}, got {method!r}")
    if method == "scripting" and format != "torchscript":
        raise UserError("scripting exports TorchScript only: use --format torchscript (or tracing for ONNX)")
    if image.dim() != 3 or image.shape[0] != 3:
        raise UserError(f"the sample image must be a (3, H, W) tensor, got shape {tuple(image.shape)}")
    model.eval()
    adapter = ExportAdapter(model, _with_masks(model, image)).eval()
    scripted = _script(model, adapter.with_masks) if method == "scripting" else None  # errors before writing
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, _FILES[format])
    tmp = path + ".tmp"
    with torch.no_grad(), _quiet():
        args = adapter.example_inputs(image)
        if scripted is not None:
            torch.jit.save(scripted, tmp)
        elif format == "torchscript":
            torch.jit.save(torch.jit.trace(adapter, args, check_trace=False), tmp)
        else:
            register_onnx_symbolics(ONNX_OPSET)
            dynamic = {"image": {1: "height", 2: "width"}}
            dynamic.update({name: {0: "detections"} for name in adapter.output_names})
            if adapter.sized and adapter.with_masks:
                dynamic["masks"].update({1: "out_height", 2: "out_width"})
            torch.onnx.export(adapter, args, tmp, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=list(adapter.input_names), output_names=list(adapter.output_names),
                              dynamic_axes=dynamic)
    os.replace(tmp, path)
    info = dict(metadata or {})
    info.update(_postprocess_info(model))
    info.update(format=format, method=method, file=os.path.basename(path), inputs=list(adapter.input_names),
                outputs=list(adapter.output_names),
                onnx_opset=ONNX_OPSET if format == "onnx" else None,
                traced_on=list(image.shape[1:]))
    with open(os.path.join(output_dir, "export.json"), "w") as f:
        json.dump(info, f, indent=1)
    logger.info("exported %s (%s, %s) with outputs %s", path, format, method, ", ".join(adapter.output_names))
    return path


def _postprocess_info(model: nn.Module) -> Dict:
    """How the predictor turns raw outputs into results: ``"detector"`` (Detectron2's
    ``detector_postprocess``: boxes scaled and clipped, masks pasted at 0.5) or, for a model
    declaring ``export_postprocess = "segments"`` (class-agnostic segments from windows, e.g.
    SharpMask), :func:`segzoo.modeling.layers.paste_segments` with the model's ``mask_thresh``
    and ``nms_thresh``; a model whose masks are made at the output size needs none."""
    kind = getattr(model, "export_postprocess", "detector")
    if kind not in ("detector", "segments"):
        raise UserError(f"{type(model).__name__}.export_postprocess must be 'detector' or 'segments', got {kind!r}")
    info = {"postprocess": "none" if getattr(model, "masks_at_output_size", False) else kind}
    if kind == "segments":
        info.update(mask_threshold=float(model.mask_thresh), nms_threshold=float(model.nms_thresh))
    return info


def export_metadata(cfg) -> Dict:
    """What :class:`ExportedPredictor` needs from a config: input format and test resize."""
    return {
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
    }


def resize_for_test(original_image: np.ndarray, min_size: int, max_size: int) -> Tensor:
    """``(H, W, 3)`` array -> ``(3, h, w)`` float32 tensor resized as ``DefaultPredictor`` does."""
    from detectron2.data import transforms as T

    aug = T.ResizeShortestEdge([min_size, min_size], max_size)
    image = aug.get_transform(original_image).apply_image(original_image)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1))


class ExportedPredictor:
    """Runs an exported model like Detectron2's ``DefaultPredictor``: ``predictor(image)`` takes
    an ``(H, W, 3)`` uint8 array in the model's input format, resizes it to the test size,
    runs the exported graph and returns ``Instances`` at the original size (boxes scaled,
    masks pasted by ``detector_postprocess``). :meth:`run` gives the raw outputs."""

    def __init__(self, output_dir: str, providers: Sequence[str] = ("CPUExecutionProvider",)):
        meta = os.path.join(output_dir, "export.json")
        if not os.path.isfile(meta):
            raise UserError(f"{output_dir}: no export.json (not a directory written by export_model)")
        with open(meta) as f:
            self.info = json.load(f)
        self.format = self.info["format"]
        path = os.path.join(output_dir, self.info["file"])
        if self.format == "torchscript":
            from ..ops import load_extension

            load_extension()  # the graph calls torch.ops.segzoo.*
            with _quiet():
                self._ts = torch.jit.load(path, map_location="cpu")
        else:
            import onnxruntime as ort

            self._ort = ort.InferenceSession(path, providers=list(providers))

    @property
    def sized(self) -> bool:
        """Whether the graph takes the output size (its outputs are then final)."""
        return "output_size" in self.info.get("inputs", ())

    def run(self, image: Tensor, output_size: Optional[Tuple[int, int]] = None) -> Dict[str, Tensor]:
        """Raw outputs for one resized ``(3, H, W)`` image (and, for a graph that takes it, the
        output size, default the image's)."""
        args = [image]
        if self.sized:
            args.append(torch.tensor(output_size or image.shape[1:], dtype=torch.int64))
        if self.format == "torchscript":
            with torch.no_grad():
                outs = self._ts(*args)
        else:
            feed = dict(zip(self.info["inputs"], (a.numpy() for a in args)))
            outs = [torch.from_numpy(o) for o in self._ort.run(None, feed)]
        return dict(zip(self.info["outputs"], outs))

    def resize(self, original_image: np.ndarray) -> Tensor:
        return resize_for_test(original_image, self.info["min_size_test"], self.info["max_size_test"])

    def __call__(self, original_image: np.ndarray):
        from detectron2.modeling.postprocessing import detector_postprocess
        from detectron2.structures import Boxes, Instances

        from ..modeling.layers import paste_segments

        h, w = original_image.shape[:2]
        image = self.resize(original_image)
        out = self.run(image, (h, w))
        post = self.info.get("postprocess", "detector")
        if post == "segments":
            return paste_segments(out["boxes"], out["masks"][:, 0], torch.logit(out["scores"].double()).float(),
                                  tuple(image.shape[1:]), (h, w), self.info["mask_threshold"], self.info["nms_threshold"])
        size = (h, w) if post == "none" else tuple(image.shape[1:])
        inst = Instances(size, pred_boxes=Boxes(out["boxes"]), scores=out["scores"], pred_classes=out["classes"])
        if "masks" in out:
            inst.pred_masks = out["masks"]
        return inst if post == "none" else detector_postprocess(inst, h, w)
