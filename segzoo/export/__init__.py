"""Export of segzoo's models and ops: TorchScript and ONNX (checked against onnxruntime)."""
from .model import (
    EXPORT_FORMATS,
    EXPORT_METHODS,
    OUTPUT_NAMES,
    ExportAdapter,
    ExportedPredictor,
    check_raw_inference,
    export_metadata,
    export_model,
    raw_inference,
    resize_for_test,
)
from .onnx_ops import MIN_OPSET, register_onnx_symbolics

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_METHODS",
    "MIN_OPSET",
    "OUTPUT_NAMES",
    "ExportAdapter",
    "ExportedPredictor",
    "check_raw_inference",
    "export_metadata",
    "export_model",
    "raw_inference",
    "register_onnx_symbolics",
    "resize_for_test",
]
