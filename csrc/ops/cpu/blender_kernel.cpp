// CPU kernels of the fused blender.
//
// Both passes are parallel over instances. Each thread works on one instance
// at a time in a small scratch (K x H x W in fp32): separable resize of the
// attentions, softmax over K with ATen's vectorised exp, weighted sum; in
// backward the same, then the transposed resize accumulates the attention
// gradient of the thread's own instance, so no atomics are needed. Nothing
// instance-sized outlives the call. Interpolation taps are computed once per
// call for every output row and column.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../blender_common.h"

namespace segzoo {
namespace ops {

namespace {

using namespace blend;

template <typename acc_t>
std::vector<Tap<acc_t>> axis_taps(int out_size, int in_size, Interp interp) {
  std::vector<Tap<acc_t>> taps(out_size);
  for (int i = 0; i < out_size; ++i) taps[i] = axis_tap<acc_t>(i, out_size, in_size, interp);
  return taps;
}

// Per-thread scratch for one instance (never kept beyond the instance).
template <typename acc_t>
struct Scratch {
  std::vector<acc_t> u;    // K x P: upsampled attentions, then exp / softmax / du
  std::vector<acc_t> c;    // K x P: crops in acc_t
  std::vector<acc_t> out;  // P: blended value
  std::vector<acc_t> aux;  // P: running max, then 1 / sum
  std::vector<acc_t> row;  // mw: one vertically interpolated attention row
  Scratch(int K, int64_t P, int mw) : u(K * P), c(K * P), out(P), aux(P), row(mw) {}
};

template <typename acc_t>
inline at::Tensor wrap(std::vector<acc_t>& v) {
  return at::from_blob(
      v.data(), {static_cast<int64_t>(v.size())},
      at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
}

// Separable resize of the K attention planes of one instance to H x W (vertical
// taps first, then horizontal), into sc.u.
template <typename scalar_t, typename acc_t>
void upsample_instance(
    const scalar_t* attn_n, const Sizes& sz, const std::vector<Tap<acc_t>>& ty,
    const std::vector<Tap<acc_t>>& tx, Scratch<acc_t>& sc) {
  const int K = sz.K, H = sz.H, W = sz.W, mh = sz.mh, mw = sz.mw;
  for (int k = 0; k < K; ++k) {
    const scalar_t* plane = attn_n + static_cast<int64_t>(k) * mh * mw;
    for (int y = 0; y < H; ++y) {
      const Tap<acc_t>& t = ty[y];
      const scalar_t* r0 = plane + t.i0 * mw;
      const scalar_t* r1 = plane + t.i1 * mw;
      for (int j = 0; j < mw; ++j) {
        sc.row[j] = t.w0 * static_cast<acc_t>(r0[j]) + t.w1 * static_cast<acc_t>(r1[j]);
      }
      acc_t* urow = sc.u.data() + (static_cast<int64_t>(k) * H + y) * W;
      for (int x = 0; x < W; ++x) {
        urow[x] = tx[x].w0 * sc.row[tx[x].i0] + tx[x].w1 * sc.row[tx[x].i1];
      }
    }
  }
}

// Transpose of upsample_instance: accumulates the K planes of sc.u (d/d upsampled
// attentions) onto grad_attn (K x mh x mw, acc_t).
template <typename acc_t>
void scatter_instance(
    const Sizes& sz, const std::vector<Tap<acc_t>>& ty, const std::vector<Tap<acc_t>>& tx,
    Scratch<acc_t>& sc, acc_t* grad_attn) {
  const int K = sz.K, H = sz.H, W = sz.W, mh = sz.mh, mw = sz.mw;
  for (int k = 0; k < K; ++k) {
    acc_t* plane = grad_attn + static_cast<int64_t>(k) * mh * mw;
    for (int y = 0; y < H; ++y) {
      std::fill(sc.row.begin(), sc.row.end(), acc_t(0));
      const acc_t* urow = sc.u.data() + (static_cast<int64_t>(k) * H + y) * W;
      for (int x = 0; x < W; ++x) {
        sc.row[tx[x].i0] += tx[x].w0 * urow[x];
        sc.row[tx[x].i1] += tx[x].w1 * urow[x];
      }
      const Tap<acc_t>& t = ty[y];
      acc_t* r0 = plane + t.i0 * mw;
      acc_t* r1 = plane + t.i1 * mw;
      for (int j = 0; j < mw; ++j) {
        r0[j] += t.w0 * sc.row[j];
        r1[j] += t.w1 * sc.row[j];
      }
    }
  }
}

// Forward of one instance. On return: K > 1: sc.u = softmax weights a_k,
// sc.out = sum_k a_k c_k; K = 1: sc.u = sigmoid(u), sc.c = sigmoid(c),
// sc.out = their product. The exponentials run through ATen's vectorised
// exp / sigmoid on the instance's scratch.
template <typename scalar_t, typename acc_t>
void blend_instance(
    const scalar_t* crop_n, const scalar_t* attn_n, const Sizes& sz,
    const std::vector<Tap<acc_t>>& ty, const std::vector<Tap<acc_t>>& tx, Scratch<acc_t>& sc) {
  const int K = sz.K;
  const int64_t P = sz.plane();
  upsample_instance<scalar_t, acc_t>(attn_n, sz, ty, tx, sc);
  acc_t* u = sc.u.data();
  acc_t* c = sc.c.data();
  acc_t* out = sc.out.data();
  acc_t* aux = sc.aux.data();
  for (int64_t i = 0; i < K * P; ++i) c[i] = static_cast<acc_t>(crop_n[i]);
  if (K == 1) {
    wrap(sc.u).sigmoid_();
    wrap(sc.c).sigmoid_();
    for (int64_t p = 0; p < P; ++p) out[p] = u[p] * c[p];
    return;
  }
  std::copy(u, u + P, aux);
  for (int k = 1; k < K; ++k) {
    const acc_t* uk = u + k * P;
    for (int64_t p = 0; p < P; ++p) aux[p] = uk[p] > aux[p] ? uk[p] : aux[p];
  }
  for (int k = 0; k < K; ++k) {
    acc_t* uk = u + k * P;
    for (int64_t p = 0; p < P; ++p) uk[p] -= aux[p];
  }
  wrap(sc.u).exp_();
  std::fill(aux, aux + P, acc_t(0));
  for (int k = 0; k < K; ++k) {
    const acc_t* uk = u + k * P;
    for (int64_t p = 0; p < P; ++p) aux[p] += uk[p];
  }
  for (int64_t p = 0; p < P; ++p) aux[p] = acc_t(1) / aux[p];
  std::fill(out, out + P, acc_t(0));
  for (int k = 0; k < K; ++k) {
    acc_t* uk = u + k * P;
    const acc_t* ck = c + k * P;
    for (int64_t p = 0; p < P; ++p) {
      uk[p] *= aux[p];
      out[p] += uk[p] * ck[p];
    }
  }
}

at::Tensor forward_cpu(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp_name) {
  const Interp interp = parse_interp(interp_name);
  const Sizes sz = check_forward(c10::kCPU, crops, attentions);
  const int64_t N = sz.N;
  at::Tensor output = at::empty({N, sz.H, sz.W}, crops.options());
  if (N == 0) return output;

  at::Tensor crops_c = crops.contiguous();
  at::Tensor attn_c = attentions.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, crops.scalar_type(), "blender_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto ty = axis_taps<acc_t>(sz.H, sz.mh, interp);
        const auto tx = axis_taps<acc_t>(sz.W, sz.mw, interp);
        const scalar_t* crop_data = crops_c.data_ptr<scalar_t>();
        const scalar_t* attn_data = attn_c.data_ptr<scalar_t>();
        scalar_t* out_data = output.data_ptr<scalar_t>();
        const int64_t P = sz.plane();
        const int64_t attn_size = sz.attn_size();
        at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
          Scratch<acc_t> sc(sz.K, P, sz.mw);
          for (int64_t n = begin; n < end; ++n) {
            blend_instance<scalar_t, acc_t>(
                crop_data + n * sz.K * P, attn_data + n * attn_size, sz, ty, tx, sc);
            scalar_t* out_n = out_data + n * P;
            for (int64_t p = 0; p < P; ++p) out_n[p] = static_cast<scalar_t>(sc.out[p]);
          }
        });
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp_name) {
  const Interp interp = parse_interp(interp_name);
  const Sizes sz = check_backward(c10::kCPU, grad, crops, attentions);
  const int64_t N = sz.N;
  const int K = sz.K;
  at::Tensor grad_crops = at::empty_like(crops, at::MemoryFormat::Contiguous);
  at::Tensor grad_attn = at::empty_like(attentions, at::MemoryFormat::Contiguous);
  if (N == 0) return std::make_tuple(grad_crops, grad_attn);

  at::Tensor grad_c = grad.to(crops.scalar_type()).contiguous();
  at::Tensor crops_c = crops.contiguous();
  at::Tensor attn_c = attentions.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, crops.scalar_type(), "blender_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto ty = axis_taps<acc_t>(sz.H, sz.mh, interp);
        const auto tx = axis_taps<acc_t>(sz.W, sz.mw, interp);
        const scalar_t* g_data = grad_c.data_ptr<scalar_t>();
        const scalar_t* crop_data = crops_c.data_ptr<scalar_t>();
        const scalar_t* attn_data = attn_c.data_ptr<scalar_t>();
        scalar_t* gc_data = grad_crops.data_ptr<scalar_t>();
        scalar_t* ga_data = grad_attn.data_ptr<scalar_t>();
        const int64_t P = sz.plane();
        const int64_t attn_size = sz.attn_size();
        at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
          Scratch<acc_t> sc(K, P, sz.mw);
          std::vector<acc_t> acc(attn_size);
          for (int64_t n = begin; n < end; ++n) {
            blend_instance<scalar_t, acc_t>(
                crop_data + n * K * P, attn_data + n * attn_size, sz, ty, tx, sc);
            const scalar_t* g_n = g_data + n * P;
            scalar_t* gc_n = gc_data + n * K * P;
            acc_t* u = sc.u.data();
            const acc_t* c = sc.c.data();
            const acc_t* out = sc.out.data();
            if (K == 1) {
              // u = sigmoid(attn), c = sigmoid(crop)
              for (int64_t p = 0; p < P; ++p) {
                const acc_t g = static_cast<acc_t>(g_n[p]);
                gc_n[p] = static_cast<scalar_t>(g * u[p] * c[p] * (acc_t(1) - c[p]));
                u[p] = g * c[p] * u[p] * (acc_t(1) - u[p]);
              }
            } else {
              // u = softmax weights a_k: d/dc_k = g a_k, d/du_k = g a_k (c_k - out)
              for (int k = 0; k < K; ++k) {
                acc_t* uk = u + k * P;
                const acc_t* ck = c + k * P;
                scalar_t* gck = gc_n + k * P;
                for (int64_t p = 0; p < P; ++p) {
                  const acc_t ga = static_cast<acc_t>(g_n[p]) * uk[p];
                  gck[p] = static_cast<scalar_t>(ga);
                  uk[p] = ga * (ck[p] - out[p]);
                }
              }
            }
            std::fill(acc.begin(), acc.end(), acc_t(0));
            scatter_instance<acc_t>(sz, ty, tx, sc, acc.data());
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
