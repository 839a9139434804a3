// Dispatcher entry points of the blender. Kernels register themselves per
// backend in cpu/, cuda/, autograd/ and autocast/.
#include "blender.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace segzoo {
namespace ops {

at::Tensor blender(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("segzoo::blender", "")
                       .typed<decltype(blender)>();
  return op.call(crops, attentions, interp);
}

std::tuple<at::Tensor, at::Tensor> _blender_backward(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("segzoo::_blender_backward", "")
                       .typed<decltype(_blender_backward)>();
  return op.call(grad, crops, attentions, interp);
}

TORCH_LIBRARY_FRAGMENT(segzoo, m) {
  m.def(TORCH_SELECTIVE_SCHEMA(
      "segzoo::blender(Tensor crops, Tensor attentions, str interp) -> Tensor"));
  m.def(TORCH_SELECTIVE_SCHEMA(
      "segzoo::_blender_backward(Tensor grad, Tensor crops, Tensor attentions, "
      "str interp) -> (Tensor, Tensor)"));
}

}  // namespace ops
}  // namespace segzoo
