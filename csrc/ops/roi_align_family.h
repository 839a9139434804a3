#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>
#include <tuple>

namespace segzoo {
namespace ops {

// mode: "avg" | "max" | "warp" | "pool" (see segzoo/ops/roi_align_family.py);
// any other value is rejected with a ValueError.
//
// Returns (output (K, C, PH, PW), argmax). argmax is int32 of the output's
// shape for the max modes (RoIAlign max: index of the winning sample inside
// its bin; RoIPool: flat h * W + w index into the input plane; -1 = empty bin)
// and an empty tensor for the averaging modes.
std::tuple<at::Tensor, at::Tensor> roi_align_family(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode);

at::Tensor _roi_align_family_backward(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode);

}  // namespace ops
}  // namespace segzoo
