// Dispatcher entry points of the RoIAlign family. Kernels register themselves
// per backend in cpu/, cuda/, autograd/ and autocast/.
#include "roi_align_family.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace segzoo {
namespace ops {

std::tuple<at::Tensor, at::Tensor> roi_align_family(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("segzoo::roi_align_family", "")
                       .typed<decltype(roi_align_family)>();
  return op.call(
      input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
      aligned, mode);
}

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
    c10::string_view mode) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("segzoo::_roi_align_family_backward", "")
                       .typed<decltype(_roi_align_family_backward)>();
  return op.call(
      grad, rois, argmax, spatial_scale, pooled_height, pooled_width,
      batch_size, channels, height, width, sampling_ratio, aligned, mode);
}

TORCH_LIBRARY_FRAGMENT(segzoo, m) {
  m.def(TORCH_SELECTIVE_SCHEMA(
      "segzoo::roi_align_family(Tensor input, Tensor rois, float spatial_scale, "
      "int pooled_height, int pooled_width, int sampling_ratio, bool aligned, "
      "str mode) -> (Tensor, Tensor)"));
  m.def(TORCH_SELECTIVE_SCHEMA(
      "segzoo::_roi_align_family_backward(Tensor grad, Tensor rois, Tensor argmax, "
      "float spatial_scale, int pooled_height, int pooled_width, int batch_size, "
      "int channels, int height, int width, int sampling_ratio, bool aligned, "
      "str mode) -> Tensor"));
}

}  // namespace ops
}  // namespace segzoo
