#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>
#include <tuple>

namespace segzoo {
namespace ops {

// BlendMask's blender, fused.
//   crops:      (N, K, H, W)   bases cropped by each instance's box (RoIAlign)
//   attentions: (N, K, Mh, Mw) the instance's attention maps
//   interp:     "bilinear" (align_corners=False) or "nearest"; any other
//               value is rejected with a ValueError
// Returns (N, H, W):
//   K > 1: mask logits  sum_k crops_k * softmax_k(up(attentions))_k
//   K = 1: mask probabilities  sigmoid(crops) * sigmoid(up(attentions))
// where up() resizes Mh x Mw -> H x W as torch.nn.functional.interpolate does.
// The upsampled attentions are never materialised; backward recomputes them.
at::Tensor blender(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp);

// Returns (grad_crops, grad_attentions).
std::tuple<at::Tensor, at::Tensor> _blender_backward(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp);

}  // namespace ops
}  // namespace segzoo
