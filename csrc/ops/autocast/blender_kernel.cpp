// Autocast: the blender is a per-pixel weighted sum, so it runs in the
// autocast dtype (fp16 / bf16) like a matmul; its kernels accumulate in fp32.
// Both inputs are cast to that dtype (they may arrive as fp32 crops from an
// fp32 RoIAlign and fp16 attentions from a conv).
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "../blender.h"

namespace segzoo {
namespace ops {

namespace {

template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
at::Tensor blender_autocast(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  const auto dtype = at::autocast::get_autocast_dtype(device_type);
  return blender(
      at::autocast::cached_cast(dtype, crops, device_type),
      at::autocast::cached_cast(dtype, attentions, device_type), interp);
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, AutocastCUDA, m) {
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::blender"),
      TORCH_FN((blender_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>)));
}

TORCH_LIBRARY_IMPL(segzoo, AutocastCPU, m) {
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::blender"),
      TORCH_FN((blender_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>)));
}

}  // namespace ops
}  // namespace segzoo
