// Autograd of the fused blender: saves the inputs only (crops and the
// low-resolution attentions); backward recomputes the interpolation and the
// softmax per pixel instead of keeping the (N, K, H, W) upsampled attentions.
#include <torch/autograd.h>
#include <torch/library.h>
#include <torch/types.h>

#include <string>

#include "../blender.h"

namespace segzoo {
namespace ops {

namespace {

class BlenderFunction : public torch::autograd::Function<BlenderFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::Variable& crops,
      const torch::autograd::Variable& attentions,
      c10::string_view interp) {
    ctx->saved_data["interp"] = std::string(interp);
    ctx->save_for_backward({crops, attentions});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {blender(crops, attentions, interp)};
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::variable_list& grad_output) {
    auto saved = ctx->get_saved_variables();
    auto grads = _blender_backward(
        grad_output[0], saved[0], saved[1], ctx->saved_data["interp"].toStringRef());
    return {std::get<0>(grads), std::get<1>(grads), torch::autograd::Variable()};
  }
};

// The backward op itself is not differentiable (no double backward).
class BlenderBackwardFunction : public torch::autograd::Function<BlenderBackwardFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::Variable& grad,
      const torch::autograd::Variable& crops,
      const torch::autograd::Variable& attentions,
      c10::string_view interp) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto grads = _blender_backward(grad, crops, attentions, interp);
    return {std::get<0>(grads), std::get<1>(grads)};
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::variable_list& grad_output) {
    TORCH_CHECK(false, "segzoo::blender: double backward is not supported");
  }
};

at::Tensor blender_autograd(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp) {
  return BlenderFunction::apply(crops, attentions, interp)[0];
}

std::tuple<at::Tensor, at::Tensor> blender_backward_autograd(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp) {
  auto r = BlenderBackwardFunction::apply(grad, crops, attentions, interp);
  return std::make_tuple(r[0], r[1]);
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, Autograd, m) {
  m.impl(TORCH_SELECTIVE_NAME("segzoo::blender"), TORCH_FN(blender_autograd));
  m.impl(TORCH_SELECTIVE_NAME("segzoo::_blender_backward"), TORCH_FN(blender_backward_autograd));
}

}  // namespace ops
}  // namespace segzoo
