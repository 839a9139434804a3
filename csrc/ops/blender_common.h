// Interpolation taps of the fused blender (CPU and CUDA), the per-pixel
// forward / backward used by the CUDA kernels, and the sizes and checks shared
// by the host wrappers of both backends.
//
// Output pixel (y, x) of instance n reads the K crop values at (y, x) and the
// K attention values interpolated at (y, x) from the Mh x Mw attention grid
// (two taps per axis: bilinear as torch's upsample_bilinear2d with
// align_corners=False, or one tap for nearest as torch's upsample_nearest2d).
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>
#include <math.h>
#include <cmath>

namespace segzoo {
namespace ops {
namespace blend {

// The op's `str interp` argument, parsed once per call by parse_interp().
enum Interp {
  kBilinear,  // "bilinear": upsample_bilinear2d, align_corners=False
  kNearest,   // "nearest":  upsample_nearest2d
};

inline Interp parse_interp(c10::string_view name) {
  if (name == "bilinear") return kBilinear;
  if (name == "nearest") return kNearest;
  C10_THROW_ERROR(
      ValueError,
      c10::str("segzoo::blender: unknown interp '", name, "' (expected 'bilinear' or 'nearest')"));
}

template <typename acc_t>
struct Tap {
  int i0, i1;
  acc_t w0, w1;
};

// Source taps of output index `dst` along one axis (in_size -> out_size).
template <typename acc_t>
C10_HOST_DEVICE inline Tap<acc_t> axis_tap(int dst, int out_size, int in_size, Interp interp) {
  Tap<acc_t> t;
  if (interp == kNearest) {
    // torch nearest_idx: identity, exact x2, else floor(dst * (in / out)) in float
    int src;
    if (out_size == in_size) {
      src = dst;
    } else if (out_size == 2 * in_size) {
      src = dst >> 1;
    } else {
      const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
      src = static_cast<int>(floorf(static_cast<float>(dst) * scale));
      if (src > in_size - 1) src = in_size - 1;
    }
    t.i0 = src;
    t.i1 = src;
    t.w0 = acc_t(1);
    t.w1 = acc_t(0);
    return t;
  }
  const acc_t scale = static_cast<acc_t>(in_size) / static_cast<acc_t>(out_size);
  acc_t src = scale * (static_cast<acc_t>(dst) + acc_t(0.5)) - acc_t(0.5);
  if (src < acc_t(0)) src = acc_t(0);
  int lo = static_cast<int>(src);
  if (lo > in_size - 1) lo = in_size - 1;
  t.i0 = lo;
  t.i1 = lo + ((lo < in_size - 1) ? 1 : 0);
  t.w1 = src - static_cast<acc_t>(lo);
  t.w0 = acc_t(1) - t.w1;
  return t;
}

// Attention value of one (Mh x Mw) plane at the taps (ty, tx).
template <typename acc_t, typename attn_t>
C10_HOST_DEVICE inline acc_t interp_at(
    const attn_t* plane, int mw, const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
  const attn_t* r0 = plane + ty.i0 * mw;
  const attn_t* r1 = plane + ty.i1 * mw;
  return ty.w0 * (tx.w0 * static_cast<acc_t>(r0[tx.i0]) + tx.w1 * static_cast<acc_t>(r0[tx.i1])) +
      ty.w1 * (tx.w0 * static_cast<acc_t>(r1[tx.i0]) + tx.w1 * static_cast<acc_t>(r1[tx.i1]));
}

C10_HOST_DEVICE inline float exp_acc(float v) {
  return expf(v);
}
C10_HOST_DEVICE inline double exp_acc(double v) {
  return exp(v);
}

template <typename acc_t>
C10_HOST_DEVICE inline acc_t sigmoid(acc_t v) {
  return acc_t(1) / (acc_t(1) + exp_acc(-v));
}

// Softmax statistics of the K upsampled attentions at one pixel (online
// softmax: one pass), and the blended value sum_k crop_k * a_k.
template <typename acc_t>
struct SoftmaxStats {
  acc_t max, sum, out;
};

template <typename scalar_t, typename acc_t, typename attn_t>
C10_HOST_DEVICE inline SoftmaxStats<acc_t> softmax_blend(
    const scalar_t* crop,  // crop value of k = 0 at this pixel; k stride crop_stride
    int64_t crop_stride,
    const attn_t* attn,  // plane of k = 0; k stride mh * mw
    int mh,
    int mw,
    int K,
    const Tap<acc_t>& ty,
    const Tap<acc_t>& tx) {
  SoftmaxStats<acc_t> s;
  s.max = interp_at<acc_t>(attn, mw, ty, tx);
  s.sum = acc_t(1);
  acc_t weighted = static_cast<acc_t>(crop[0]);
  for (int k = 1; k < K; ++k) {
    const acc_t u = interp_at<acc_t>(attn + k * mh * mw, mw, ty, tx);
    const acc_t c = static_cast<acc_t>(crop[k * crop_stride]);
    if (u > s.max) {
      const acc_t scale = exp_acc(s.max - u);
      s.sum = s.sum * scale + acc_t(1);
      weighted = weighted * scale + c;
      s.max = u;
    } else {
      const acc_t e = exp_acc(u - s.max);
      s.sum += e;
      weighted += e * c;
    }
  }
  s.out = weighted / s.sum;
  return s;
}

// Forward value of one pixel.
template <typename scalar_t, typename acc_t, typename attn_t>
C10_HOST_DEVICE inline acc_t blend_pixel(
    const scalar_t* crop,
    int64_t crop_stride,
    const attn_t* attn,
    int mh,
    int mw,
    int K,
    const Tap<acc_t>& ty,
    const Tap<acc_t>& tx) {
  if (K == 1) {
    return sigmoid(static_cast<acc_t>(crop[0])) * sigmoid(interp_at<acc_t>(attn, mw, ty, tx));
  }
  return softmax_blend<scalar_t, acc_t>(crop, crop_stride, attn, mh, mw, K, ty, tx).out;
}

// Scatters d(attention at the pixel) onto the attention grid through the taps.
template <typename acc_t, typename Adder>
C10_HOST_DEVICE inline void scatter_taps(
    acc_t* plane, int mw, const Tap<acc_t>& ty, const Tap<acc_t>& tx, acc_t g, const Adder& add) {
  add(plane + ty.i0 * mw + tx.i0, g * ty.w0 * tx.w0);
  add(plane + ty.i0 * mw + tx.i1, g * ty.w0 * tx.w1);
  add(plane + ty.i1 * mw + tx.i0, g * ty.w1 * tx.w0);
  add(plane + ty.i1 * mw + tx.i1, g * ty.w1 * tx.w1);
}

// Backward of one pixel: writes d/dcrops (K values) and accumulates
// d/dattentions into grad_attn (acc_t, K planes of mh x mw) with `add`.
template <typename scalar_t, typename acc_t, typename attn_t, typename Adder>
C10_HOST_DEVICE inline void blend_pixel_backward(
    acc_t g,
    const scalar_t* crop,
    int64_t crop_stride,
    const attn_t* attn,
    int mh,
    int mw,
    int K,
    const Tap<acc_t>& ty,
    const Tap<acc_t>& tx,
    scalar_t* grad_crop,
    acc_t* grad_attn,
    const Adder& add) {
  if (K == 1) {
    const acc_t sc = sigmoid(static_cast<acc_t>(crop[0]));
    const acc_t su = sigmoid(interp_at<acc_t>(attn, mw, ty, tx));
    grad_crop[0] = static_cast<scalar_t>(g * su * sc * (acc_t(1) - sc));
    scatter_taps(grad_attn, mw, ty, tx, g * sc * su * (acc_t(1) - su), add);
    return;
  }
  const SoftmaxStats<acc_t> s =
      softmax_blend<scalar_t, acc_t>(crop, crop_stride, attn, mh, mw, K, ty, tx);
  const acc_t inv_sum = acc_t(1) / s.sum;
  for (int k = 0; k < K; ++k) {
    const acc_t u = interp_at<acc_t>(attn + k * mh * mw, mw, ty, tx);
    const acc_t a = exp_acc(u - s.max) * inv_sum;
    const acc_t c = static_cast<acc_t>(crop[k * crop_stride]);
    grad_crop[k * crop_stride] = static_cast<scalar_t>(g * a);
    scatter_taps(grad_attn + k * mh * mw, mw, ty, tx, g * a * (c - s.out), add);
  }
}

// ---------------------------------------------------------------------------
// Host side: sizes of one call and the checks of the CPU and CUDA wrappers.

// Sizes of one call: crops (N, K, H, W), attentions (N, K, mh, mw).
struct Sizes {
  int64_t N;
  int K;
  int H;
  int W;
  int mh;
  int mw;

  int64_t plane() const {  // output pixels per instance
    return static_cast<int64_t>(H) * W;
  }
  int64_t attn_size() const {  // attention values per instance
    return static_cast<int64_t>(K) * mh * mw;
  }
};

namespace detail {

inline void check_device(c10::DeviceType backend, const char* name, const at::Tensor& t) {
  TORCH_CHECK(
      t.device().type() == backend, "segzoo::blender: ", name, " must be a ", backend,
      " tensor, got one on ", t.device());
}

}  // namespace detail

// Checks of segzoo::blender (CPU and CUDA wrappers).
inline Sizes check_forward(
    c10::DeviceType backend,
    const at::Tensor& crops,
    const at::Tensor& attentions) {
  detail::check_device(backend, "crops", crops);
  detail::check_device(backend, "attentions", attentions);
  TORCH_CHECK(
      crops.device() == attentions.device(), "segzoo::blender: crops (", crops.device(),
      ") and attentions (", attentions.device(), ") must be on the same device");
  TORCH_CHECK(
      crops.dim() == 4, "segzoo::blender: crops must be (N, K, H, W), got ", crops.sizes());
  TORCH_CHECK(
      attentions.dim() == 4, "segzoo::blender: attentions must be (N, K, Mh, Mw), got ",
      attentions.sizes());
  TORCH_CHECK(
      crops.size(0) == attentions.size(0) && crops.size(1) == attentions.size(1),
      "segzoo::blender: crops ", crops.sizes(), " and attentions ", attentions.sizes(),
      " must agree in N (instances) and K (bases)");
  TORCH_CHECK(
      crops.size(1) >= 1 && crops.size(2) >= 1 && crops.size(3) >= 1 &&
          attentions.size(2) >= 1 && attentions.size(3) >= 1,
      "segzoo::blender: K and spatial sizes must be >= 1, got crops ", crops.sizes(),
      ", attentions ", attentions.sizes());
  TORCH_CHECK(
      crops.scalar_type() == attentions.scalar_type(), "segzoo::blender: crops (",
      crops.scalar_type(), ") and attentions (", attentions.scalar_type(),
      ") must have the same dtype");
  return Sizes{
      crops.size(0),
      static_cast<int>(crops.size(1)),
      static_cast<int>(crops.size(2)),
      static_cast<int>(crops.size(3)),
      static_cast<int>(attentions.size(2)),
      static_cast<int>(attentions.size(3))};
}

// Checks of segzoo::_blender_backward (CPU and CUDA wrappers): those of the
// forward, and grad must be (N, H, W) on the same device.
inline Sizes check_backward(
    c10::DeviceType backend,
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions) {
  const Sizes s = check_forward(backend, crops, attentions);
  TORCH_CHECK(
      grad.device() == crops.device(), "segzoo::blender backward: grad (", grad.device(),
      ") must be on the device of crops (", crops.device(), ")");
  TORCH_CHECK(
      grad.dim() == 3 && grad.size(0) == s.N && grad.size(1) == s.H && grad.size(2) == s.W,
      "segzoo::blender backward: grad must be (N, H, W) = (", s.N, ", ", s.H, ", ", s.W,
      "), got ", grad.sizes());
  return s;
}

}  // namespace blend
}  // namespace ops
}  // namespace segzoo
