"""ONNX export of segzoo's custom ops, in standard ONNX operators (no custom domain).

:func:`register_onnx_symbolics` teaches ``torch.onnx.export`` (the TorchScript-based
exporter, ``dynamo=False``: the one Detectron2's export code uses) how to write
``segzoo::roi_align_family`` and ``segzoo::blender``:

================  =====================================================================
op / mode         ONNX graph (same numbers as the op, checked against onnxruntime)
================  =====================================================================
``avg``           ``RoiAlign`` (``half_pixel`` when aligned, else ``output_half_pixel``)
``warp``          box corners rounded half away from zero, then ``RoiAlign`` unaligned
``pool``          ``MaxRoiPool``
``max``, fixed    ``RoiAlign`` at ``(s*oh, s*ow)`` with one sample per bin (the op's
sampling ``s``    samples exactly), then ``MaxPool`` ``s x s``
``max``,          not expressible with ``RoiAlign`` (the sample grid depends on each box):
adaptive          the Python wrapper swaps in ``segzoo.ops.roi_align_max_composition`` at export
                  time, a gather-based composition of standard operators
``blender``       ``Resize`` (``linear``/``pytorch_half_pixel`` or ``nearest``/
                  ``asymmetric``/``floor``, as ``F.interpolate``) + ``Softmax`` over K +
                  ``Mul`` + ``ReduceSum``; K = 1: ``Sigmoid * Sigmoid``
================  =====================================================================

The minimum opset is 16 (``RoiAlign``'s ``coordinate_transformation_mode``); from opset 18 the
antialiased bilinear resize PyTorch has no symbolic for (SharpMask's image pyramid) is registered
too, as ``Resize`` with ``antialias``.
"""
import torch

__all__ = ["MIN_OPSET", "register_onnx_symbolics"]

MIN_OPSET = 16

_registered = set()


def _sym():
    from torch.onnx import symbolic_helper

    return symbolic_helper


def _const_i64(g, values):
    return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


def _roi_align_family_symbolic(g, input, rois, spatial_scale, oh, ow, sampling_ratio, aligned, mode):
    sh = _sym()
    spatial_scale = sh._get_const(spatial_scale, "f", "spatial_scale")
    oh = sh._get_const(oh, "i", "pooled_height")
    ow = sh._get_const(ow, "i", "pooled_width")
    sampling_ratio = sh._get_const(sampling_ratio, "i", "sampling_ratio")
    aligned = sh._get_const(aligned, "b", "aligned")
    mode = sh._get_const(mode, "s", "mode")

    batch = g.op("Cast", sh._slice_helper(g, rois, axes=[1], starts=[0], ends=[1]),
                 to_i=torch.onnx.TensorProtoDataType.INT64)
    batch = g.op("Squeeze", batch, _const_i64(g, [1]))
    boxes = sh._slice_helper(g, rois, axes=[1], starts=[1], ends=[5])

    if mode == "pool":
        out = g.op("MaxRoiPool", input, rois, pooled_shape_i=[oh, ow], spatial_scale_f=spatial_scale)
    elif mode == "max" and sampling_ratio <= 0:
        raise RuntimeError(
            "segzoo::roi_align_family mode 'max' with adaptive sampling reached the ONNX exporter: "
            "export through segzoo's Python wrappers (they compose it from standard ops at export time)"
        )
    else:
        if mode == "warp":
            # the op snaps box corners to the feature grid with C's round (half away from zero)
            scale = g.op("Constant", value_t=torch.tensor(spatial_scale, dtype=torch.float32))
            scale = g.op("CastLike", scale, boxes)
            scaled = g.op("Mul", boxes, scale)
            half = g.op("CastLike", g.op("Constant", value_t=torch.tensor(0.5)), boxes)
            rounded = g.op("Mul", g.op("Sign", scaled), g.op("Floor", g.op("Add", g.op("Abs", scaled), half)))
            boxes = g.op("Div", rounded, scale)
            aligned = False
        s = sampling_ratio if mode == "max" else 1
        out = g.op(
            "RoiAlign", input, boxes, batch,
            coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
            mode_s="avg",
            output_height_i=oh * s,
            output_width_i=ow * s,
            sampling_ratio_i=1 if mode == "max" else max(sampling_ratio, 0),
            spatial_scale_f=spatial_scale,
        )
        if mode == "max" and s > 1:
            out = g.op("MaxPool", out, kernel_shape_i=[s, s], strides_i=[s, s])
    # second output (argmax for the backward) is never used by an inference graph
    return out, g.op("Constant", value_t=torch.zeros(0, dtype=torch.int32))


def _blender_symbolic(g, crops, attentions, interp):
    sh = _sym()
    interp = sh._get_const(interp, "s", "interp")
    k = sh._get_tensor_dim_size(attentions, 1)
    if k is None:
        raise RuntimeError("segzoo::blender export needs a static number of bases K (dim 1 of attentions)")
    sizes = g.op(
        "Concat",
        sh._slice_helper(g, g.op("Shape", attentions), axes=[0], starts=[0], ends=[2]),
        sh._slice_helper(g, g.op("Shape", crops), axes=[0], starts=[2], ends=[4]),
        axis_i=0,
    )
    empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    if interp == "bilinear":
        kw = dict(mode_s="linear", coordinate_transformation_mode_s="pytorch_half_pixel")
    else:
        kw = dict(mode_s="nearest", coordinate_transformation_mode_s="asymmetric", nearest_mode_s="floor")
    up = g.op("Resize", attentions, empty, empty, sizes, **kw)
    if k == 1:
        out = g.op("Mul", g.op("Sigmoid", crops), g.op("Sigmoid", up))
        return g.op("Squeeze", out, _const_i64(g, [1]))
    weights = g.op("Softmax", up, axis_i=1)
    return g.op("ReduceSum", g.op("Mul", crops, weights), _const_i64(g, [1]), keepdims_i=0)


def _upsample_bilinear_aa_symbolic(g, input, output_size, align_corners, scales_h=None, scales_w=None):
    """``F.interpolate(..., mode="bilinear", antialias=True)`` (align_corners False): Resize-18's
    antialiased linear filter, renormalised at the borders as PyTorch does (``exclude_outside``)."""
    sh = _sym()
    if sh._maybe_get_const(align_corners, "b"):
        raise RuntimeError("antialiased bilinear resize with align_corners=True has no ONNX equivalent")
    empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    batch_channels = sh._slice_helper(g, g.op("Shape", input), axes=[0], starts=[0], ends=[2])
    sizes = g.op("Concat", batch_channels, g.op("Cast", output_size, to_i=torch.onnx.TensorProtoDataType.INT64), axis_i=0)
    return g.op("Resize", input, empty, empty, sizes, mode_s="linear", coordinate_transformation_mode_s="half_pixel",
                antialias_i=1, exclude_outside_i=1)


def register_onnx_symbolics(opset: int = 18) -> None:
    """Register the symbolic functions for ``opset`` (idempotent)."""
    if opset < MIN_OPSET:
        raise ValueError(f"segzoo's ops need ONNX opset >= {MIN_OPSET} (RoiAlign modes), got {opset}")
    if opset in _registered:
        return
    from ..ops import load_extension

    load_extension()  # the ops must exist before their symbolics are looked up
    torch.onnx.register_custom_op_symbolic("segzoo::roi_align_family", _roi_align_family_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("segzoo::blender", _blender_symbolic, opset)
    if opset >= 18:  # Resize's antialias attribute
        torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _upsample_bilinear_aa_symbolic, opset)
    _registered.add(opset)
