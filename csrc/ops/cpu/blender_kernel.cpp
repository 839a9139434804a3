// CPU kernels of the fused blender.
//
// Both passes are parallel over instances: an instance's attention grid
// (K x Mh x Mw) stays in cache while its H x W pixels are blended, and in
// backward each thread accumulates the attention gradient of its own
// instances, so no atomics are needed. Interpolation taps are computed once
// per call for every output row and column.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../blender_common.h"

namespace segzoo {
namespace ops {

namespace {

using namespace blend;

template <typename acc_t>
std::vector<Tap<acc_t>> axis_taps(int out_size, int in_size, int64_t interp) {
  std::vector<Tap<acc_t>> taps(out_size);
  for (int i = 0; i < out_size; ++i) taps[i] = axis_tap<acc_t>(i, out_size, in_size, interp);
  return taps;
}

at::Tensor forward_cpu(const at::Tensor& crops, const at::Tensor& attentions, int64_t interp) {
  TORCH_CHECK(crops.device().is_cpu(), "blender: crops must be a CPU tensor");
  TORCH_CHECK(attentions.device().is_cpu(), "blender: attentions must be a CPU tensor");
  check_inputs(crops, attentions, interp);
  const int64_t N = crops.size(0);
  const int K = static_cast<int>(crops.size(1));
  const int H = static_cast<int>(crops.size(2));
  const int W = static_cast<int>(crops.size(3));
  const int mh = static_cast<int>(attentions.size(2));
  const int mw = static_cast<int>(attentions.size(3));
  at::Tensor output = at::empty({N, H, W}, crops.options());
  if (N == 0) return output;

  at::Tensor crops_c = crops.contiguous();
  at::Tensor attn_c = attentions.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, crops.scalar_type(), "blender_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto ty = axis_taps<acc_t>(H, mh, interp);
        const auto tx = axis_taps<acc_t>(W, mw, interp);
        const scalar_t* crop_data = crops_c.data_ptr<scalar_t>();
        const scalar_t* attn_data = attn_c.data_ptr<scalar_t>();
        scalar_t* out_data = output.data_ptr<scalar_t>();
        const int64_t plane = static_cast<int64_t>(H) * W;
        at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
          for (int64_t n = begin; n < end; ++n) {
            const scalar_t* crop_n = crop_data + n * K * plane;
            const scalar_t* attn_n = attn_data + n * K * mh * mw;
            scalar_t* out_n = out_data + n * plane;
            for (int y = 0; y < H; ++y) {
              for (int x = 0; x < W; ++x) {
                out_n[y * W + x] = static_cast<scalar_t>(blend_pixel<scalar_t, acc_t>(
                    crop_n + y * W + x, plane, attn_n, mh, mw, K, ty[y], tx[x]));
              }
            }
          }
        });
      });
  return output;
}

struct PlainAdd {
  template <typename acc_t>
  void operator()(acc_t* p, acc_t v) const {
    *p += v;
  }
};

std::tuple<at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    int64_t interp) {
  TORCH_CHECK(grad.device().is_cpu(), "blender backward: grad must be a CPU tensor");
  check_inputs(crops, attentions, interp);
  const int64_t N = crops.size(0);
  const int K = static_cast<int>(crops.size(1));
  const int H = static_cast<int>(crops.size(2));
  const int W = static_cast<int>(crops.size(3));
  const int mh = static_cast<int>(attentions.size(2));
  const int mw = static_cast<int>(attentions.size(3));
  TORCH_CHECK(
      grad.dim() == 3 && grad.size(0) == N && grad.size(1) == H && grad.size(2) == W,
      "blender backward: grad must be (N, H, W) = (", N, ", ", H, ", ", W, "), got ",
      grad.sizes());
  at::Tensor grad_crops = at::empty_like(crops, at::MemoryFormat::Contiguous);
  at::Tensor grad_attn = at::empty_like(attentions, at::MemoryFormat::Contiguous);
  if (N == 0) return std::make_tuple(grad_crops, grad_attn);

  at::Tensor grad_c = grad.to(crops.scalar_type()).contiguous();
  at::Tensor crops_c = crops.contiguous();
  at::Tensor attn_c = attentions.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, crops.scalar_type(), "blender_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto ty = axis_taps<acc_t>(H, mh, interp);
        const auto tx = axis_taps<acc_t>(W, mw, interp);
        const scalar_t* g_data = grad_c.data_ptr<scalar_t>();
        const scalar_t* crop_data = crops_c.data_ptr<scalar_t>();
        const scalar_t* attn_data = attn_c.data_ptr<scalar_t>();
        scalar_t* gc_data = grad_crops.data_ptr<scalar_t>();
        scalar_t* ga_data = grad_attn.data_ptr<scalar_t>();
        const int64_t plane = static_cast<int64_t>(H) * W;
        const int64_t attn_size = static_cast<int64_t>(K) * mh * mw;
        at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
          std::vector<acc_t> acc(attn_size);
          for (int64_t n = begin; n < end; ++n) {
            std::fill(acc.begin(), acc.end(), acc_t(0));
            const scalar_t* g_n = g_data + n * plane;
            const scalar_t* crop_n = crop_data + n * K * plane;
            const scalar_t* attn_n = attn_data + n * attn_size;
            scalar_t* gc_n = gc_data + n * K * plane;
            for (int y = 0; y < H; ++y) {
              for (int x = 0; x < W; ++x) {
                const int64_t p = static_cast<int64_t>(y) * W + x;
                blend_pixel_backward<scalar_t, acc_t>(
                    static_cast<acc_t>(g_n[p]), crop_n + p, plane, attn_n, mh, mw, K, ty[y],
                    tx[x], gc_n + p, acc.data(), PlainAdd());
              }
            }
            scalar_t* ga_n = ga_data + n * attn_size;
            for (int64_t i = 0; i < attn_size; ++i) ga_n[i] = static_cast<scalar_t>(acc[i]);
          }
        });
      });
  return std::make_tuple(grad_crops, grad_attn);
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, CPU, m) {
  m.impl(TORCH_SELECTIVE_NAME("segzoo::blender"), TORCH_FN(forward_cpu));
  m.impl(TORCH_SELECTIVE_NAME("segzoo::_blender_backward"), TORCH_FN(backward_cpu));
}

}  // namespace ops
}  // namespace segzoo
