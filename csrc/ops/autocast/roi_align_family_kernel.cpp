// Autocast: the op runs in fp32 (box coordinates lose too much precision in
// fp16) and its output is cast back to the input's dtype, as torchvision does
// for roi_align.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "../roi_align_family.h"

namespace segzoo {
namespace ops {

namespace {

template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
std::tuple<at::Tensor, at::Tensor> roi_align_family_autocast(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  auto result = roi_align_family(
      at::autocast::cached_cast(at::kFloat, input, device_type),
      at::autocast::cached_cast(at::kFloat, rois, device_type), spatial_scale,
      pooled_height, pooled_width, sampling_ratio, aligned, mode);
  return std::make_tuple(
      std::get<0>(result).to(input.scalar_type()), std::get<1>(result));
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, AutocastCUDA, m) {
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::roi_align_family"),
      TORCH_FN((roi_align_family_autocast<
                c10::DispatchKey::AutocastCUDA,
                c10::DeviceType::CUDA>)));
}

TORCH_LIBRARY_IMPL(segzoo, AutocastCPU, m) {
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::roi_align_family"),
      TORCH_FN((roi_align_family_autocast<
                c10::DispatchKey::AutocastCPU,
                c10::DeviceType::CPU>)));
}

}  // namespace ops
}  // namespace segzoo
