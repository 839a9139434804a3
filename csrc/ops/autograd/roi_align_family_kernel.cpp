// Autograd of the RoIAlign family. The forward output is differentiable with
// respect to the input features only; argmax is saved for the max modes so
// the backward pass is exact.
#include <torch/autograd.h>
#include <torch/types.h>
#include <torch/library.h>

#include <string>

#include "../roi_align_family.h"

namespace segzoo {
namespace ops {

namespace {

class ROIAlignFamilyFunction
    : public torch::autograd::Function<ROIAlignFamilyFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::Variable& input,
      const torch::autograd::Variable& rois,
      double spatial_scale,
      int64_t pooled_height,
      int64_t pooled_width,
      int64_t sampling_ratio,
      bool aligned,
      c10::string_view mode) {
    ctx->saved_data["spatial_scale"] = spatial_scale;
    ctx->saved_data["pooled_height"] = pooled_height;
    ctx->saved_data["pooled_width"] = pooled_width;
    ctx->saved_data["sampling_ratio"] = sampling_ratio;
    ctx->saved_data["aligned"] = aligned;
    ctx->saved_data["mode"] = std::string(mode);
    ctx->saved_data["input_shape"] = input.sizes();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto result = roi_align_family(
        input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
        aligned, mode);
    auto output = std::get<0>(result);
    auto argmax = std::get<1>(result);
    ctx->save_for_backward({rois, argmax});
    ctx->mark_non_differentiable({argmax});
    return {output, argmax};
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::variable_list& grad_output) {
    auto saved = ctx->get_saved_variables();
    auto input_shape = ctx->saved_data["input_shape"].toIntList();
    auto grad_in = _roi_align_family_backward(
        grad_output[0], saved[0], saved[1],
        ctx->saved_data["spatial_scale"].toDouble(),
        ctx->saved_data["pooled_height"].toInt(),
        ctx->saved_data["pooled_width"].toInt(), input_shape[0], input_shape[1],
        input_shape[2], input_shape[3], ctx->saved_data["sampling_ratio"].toInt(),
        ctx->saved_data["aligned"].toBool(), ctx->saved_data["mode"].toStringRef());
    return {grad_in,
            torch::autograd::Variable(),
            torch::autograd::Variable(),
            torch::autograd::Variable(),
            torch::autograd::Variable(),
            torch::autograd::Variable(),
            torch::autograd::Variable(),
            torch::autograd::Variable()};
  }
};

// The backward op itself is not differentiable (no double backward).
class ROIAlignFamilyBackwardFunction
    : public torch::autograd::Function<ROIAlignFamilyBackwardFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::Variable& grad,
      const torch::autograd::Variable& rois,
      const torch::autograd::Variable& argmax,
      double spatial_scale,
      int64_t pooled_height,
      int64_t pooled_width,
      int64_t batch_size,
      int64_t channels,
      int64_t height,
      int64_t width,
      int64_t sampling_ratio,
      bool aligned,
      c10::string_view mode) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return {_roi_align_family_backward(
        grad, rois, argmax, spatial_scale, pooled_height, pooled_width,
        batch_size, channels, height, width, sampling_ratio, aligned, mode)};
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      const torch::autograd::variable_list& grad_output) {
    TORCH_CHECK(false, "segzoo::roi_align_family: double backward is not supported");
  }
};

std::tuple<at::Tensor, at::Tensor> roi_align_family_autograd(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode) {
  auto r = ROIAlignFamilyFunction::apply(
      input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
      aligned, mode);
  return std::make_tuple(r[0], r[1]);
}

at::Tensor roi_align_family_backward_autograd(
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
    c10::string_view mode) {
  return ROIAlignFamilyBackwardFunction::apply(
      grad, rois, argmax, spatial_scale, pooled_height, pooled_width,
      batch_size, channels, height, width, sampling_ratio, aligned, mode)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, Autograd, m) {
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::roi_align_family"),
      TORCH_FN(roi_align_family_autograd));
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::_roi_align_family_backward"),
      TORCH_FN(roi_align_family_backward_autograd));
}

}  // namespace ops
}  // namespace segzoo
