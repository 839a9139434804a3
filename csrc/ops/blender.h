#pragma once

#include <ATen/ATen.h>
#include <tuple>

namespace segzoo {
namespace ops {

// BlendMask's blender, fused.
//   crops:      (N, K, H, W)   bases cropped by each instance's box (RoIAlign)
//   attentions: (N, K, Mh, Mw) the instance's attention maps
//   interp:     blend::Interp (0 = bilinear, align_corners=False; 1 = nearest)
// Returns (N, H, W):
//   K > 1: mask logits  sum_k crops_k * softmax_k(up(attentions))_k
//   K = 1: mask probabilities  sigmoid(crops) * sigmoid(up(attentions))
// where up() resizes Mh x Mw -> H x W as torch.nn.functional.interpolate does.
// The upsampled attentions are never materialised; backward recomputes them.
at::Tensor blender(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    int64_t interp);

// Returns (grad_crops, grad_attentions).
std::tuple<at::Tensor, at::Tensor> _blender_backward(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    int64_t interp);

}  // namespace ops
}  // namespace segzoo
