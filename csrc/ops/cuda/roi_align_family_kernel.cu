// CUDA kernels of the RoIAlign family: one thread per output element in the
// forward pass, one thread per gradient element (scattered with atomics) in
// the backward pass. Arithmetic runs in at::opmath_type (fp32 for fp16/bf16).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "../roi_align_family_common.h"

namespace segzoo {
namespace ops {

namespace {

using namespace roi;

constexpr int kThreads = 256;

inline int num_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

// Decodes a flat (n, c, ph, pw) output index and loads its RoI in acc_t.
template <typename scalar_t>
struct OutputElement {
  int pw, ph, c;
  int64_t n, batch;
  at::opmath_type<scalar_t> roi[5];
};

template <typename scalar_t>
__device__ inline OutputElement<scalar_t> decode_output_element(
    int64_t index, const scalar_t* __restrict__ rois, int channels,
    int pooled_height, int pooled_width) {
  OutputElement<scalar_t> e;
  e.pw = index % pooled_width;
  e.ph = (index / pooled_width) % pooled_height;
  e.c = (index / pooled_width / pooled_height) % channels;
  e.n = index / pooled_width / pooled_height / channels;
#pragma unroll
  for (int i = 0; i < 5; ++i)
    e.roi[i] = static_cast<at::opmath_type<scalar_t>>(rois[e.n * 5 + i]);
  e.batch = static_cast<int64_t>(e.roi[0]);
  return e;
}

template <typename scalar_t>
__global__ void forward_kernel(
    const int64_t nthreads,
    const scalar_t* __restrict__ input,
    const scalar_t* __restrict__ rois,
    const at::opmath_type<scalar_t> spatial_scale,
    const int64_t batch_size,
    const int channels,
    const int height,
    const int width,
    const int pooled_height,
    const int pooled_width,
    const int sampling_ratio,
    const bool aligned,
    const Mode mode,
    scalar_t* __restrict__ output,
    int* __restrict__ argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < nthreads;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const OutputElement<scalar_t> e =
        decode_output_element(index, rois, channels, pooled_height, pooled_width);
    const int pw = e.pw, ph = e.ph, c = e.c;
    const acc_t* roi = e.roi;
    const int64_t b = e.batch;
    if (b < 0 || b >= batch_size) {  // rejected by the Python wrapper; stay memory-safe
      output[index] = static_cast<scalar_t>(0);
      if (argmax) argmax[index] = -1;
      continue;
    }
    const scalar_t* src = input + (b * channels + c) * static_cast<int64_t>(height) * width;

    if (mode == kPool) {
      const PoolBin bin = pool_bin<acc_t>(
          roi, spatial_scale, pooled_height, pooled_width, height, width, ph, pw);
      acc_t best = bin.empty() ? acc_t(0) : -std::numeric_limits<acc_t>::max();
      int best_idx = -1;
      for (int h = bin.hstart; h < bin.hend; ++h)
        for (int w = bin.wstart; w < bin.wend; ++w) {
          const int idx = h * width + w;
          const acc_t v = static_cast<acc_t>(src[idx]);
          if (v > best) {
            best = v;
            best_idx = idx;
          }
        }
      output[index] = static_cast<scalar_t>(best);
      argmax[index] = best_idx;
      continue;
    }

    const AlignGeometry<acc_t> g = align_geometry<acc_t>(
        roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, mode);
    const bool use_max = mode == kAlignMax;
    acc_t acc = 0;
    int best_s = -1;
    int s = 0;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      for (int ix = 0; ix < g.grid_w; ++ix, ++s) {
        acc_t y, x;
        sample_point(g, ph, pw, iy, ix, &y, &x);
        Bilinear<acc_t> bw;
        bilinear_weights(height, width, y, x, &bw);
        const acc_t v =
            bw.w1 * static_cast<acc_t>(src[bw.y_low * width + bw.x_low]) +
            bw.w2 * static_cast<acc_t>(src[bw.y_low * width + bw.x_high]) +
            bw.w3 * static_cast<acc_t>(src[bw.y_high * width + bw.x_low]) +
            bw.w4 * static_cast<acc_t>(src[bw.y_high * width + bw.x_high]);
        if (use_max) {
          if (best_s < 0 || v > acc) {
            acc = v;
            best_s = s;
          }
        } else {
          acc += v;
        }
      }
    }
    if (use_max) {
      output[index] = static_cast<scalar_t>(acc);
      argmax[index] = best_s;
    } else {
      const int count = g.grid_h * g.grid_w;
      output[index] = static_cast<scalar_t>(acc / static_cast<acc_t>(count > 0 ? count : 1));
    }
  }
}

template <typename scalar_t>
__device__ inline void add_sample_grad(
    scalar_t* dst, int height, int width, at::opmath_type<scalar_t> y,
    at::opmath_type<scalar_t> x, at::opmath_type<scalar_t> gv) {
  using acc_t = at::opmath_type<scalar_t>;
  Bilinear<acc_t> bw;
  if (!bilinear_weights(height, width, y, x, &bw)) return;
  gpuAtomicAddNoReturn(dst + bw.y_low * width + bw.x_low, static_cast<scalar_t>(bw.w1 * gv));
  gpuAtomicAddNoReturn(dst + bw.y_low * width + bw.x_high, static_cast<scalar_t>(bw.w2 * gv));
  gpuAtomicAddNoReturn(dst + bw.y_high * width + bw.x_low, static_cast<scalar_t>(bw.w3 * gv));
  gpuAtomicAddNoReturn(dst + bw.y_high * width + bw.x_high, static_cast<scalar_t>(bw.w4 * gv));
}

template <typename scalar_t>
__global__ void backward_kernel(
    const int64_t nthreads,
    const scalar_t* __restrict__ grad,
    const scalar_t* __restrict__ rois,
    const int* __restrict__ argmax,
    const at::opmath_type<scalar_t> spatial_scale,
    const int64_t batch_size,
    const int channels,
    const int height,
    const int width,
    const int pooled_height,
    const int pooled_width,
    const int sampling_ratio,
    const bool aligned,
    const Mode mode,
    scalar_t* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < nthreads;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const OutputElement<scalar_t> e =
        decode_output_element(index, rois, channels, pooled_height, pooled_width);
    const int pw = e.pw, ph = e.ph, c = e.c;
    const acc_t* roi = e.roi;
    const int64_t b = e.batch;
    if (b < 0 || b >= batch_size) continue;
    scalar_t* dst = grad_input + (b * channels + c) * static_cast<int64_t>(height) * width;
    const acc_t gv = static_cast<acc_t>(grad[index]);

    if (mode == kPool) {
      const int idx = argmax[index];
      if (idx >= 0) gpuAtomicAddNoReturn(dst + idx, static_cast<scalar_t>(gv));
      continue;
    }
    const AlignGeometry<acc_t> g = align_geometry<acc_t>(
        roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, mode);
    if (mode == kAlignMax) {
      const int s = argmax[index];
      if (s < 0) continue;
      acc_t y, x;
      sample_point(g, ph, pw, s / g.grid_w, s % g.grid_w, &y, &x);
      add_sample_grad(dst, height, width, y, x, gv);
      continue;
    }
    const int count = g.grid_h * g.grid_w;
    const acc_t gs = gv / static_cast<acc_t>(count > 0 ? count : 1);
    for (int iy = 0; iy < g.grid_h; ++iy)
      for (int ix = 0; ix < g.grid_w; ++ix) {
        acc_t y, x;
        sample_point(g, ph, pw, iy, ix, &y, &x);
        add_sample_grad(dst, height, width, y, x, gs);
      }
  }
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode_name) {
  const Mode mode = parse_mode(mode_name);
  const Sizes sz = check_forward(c10::kCUDA, input, rois, pooled_height, pooled_width);
  c10::cuda::CUDAGuard guard(input.device());

  const int64_t num_rois = sz.num_rois;
  const int64_t channels = sz.channels;
  at::Tensor output =
      at::zeros({num_rois, channels, pooled_height, pooled_width}, input.options());
  at::Tensor argmax = mode_has_argmax(mode)
      ? at::full({num_rois, channels, pooled_height, pooled_width}, -1,
                 input.options().dtype(at::kInt))
      : at::empty({0}, input.options().dtype(at::kInt));
  const int64_t n = output.numel();
  if (n == 0) return std::make_tuple(output, argmax);

  at::Tensor input_c = input.contiguous();
  at::Tensor rois_c = rois.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_family_forward_cuda", [&] {
        forward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
            n, input_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
            static_cast<at::opmath_type<scalar_t>>(spatial_scale), sz.batch_size,
            static_cast<int>(channels), sz.height, sz.width, sz.pooled_height,
            sz.pooled_width, static_cast<int>(sampling_ratio), aligned, mode,
            output.data_ptr<scalar_t>(),
            mode_has_argmax(mode) ? argmax.data_ptr<int>() : nullptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return std::make_tuple(output, argmax);
}

at::Tensor backward_cuda(
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
    c10::string_view mode_name) {
  const Mode mode = parse_mode(mode_name);
  const Sizes sz = check_backward(
      c10::kCUDA, grad, rois, argmax, mode, pooled_height, pooled_width, batch_size, channels,
      height, width);
  c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t n = grad.numel();
  if (n == 0 || sz.num_rois == 0) return grad_input;

  at::Tensor grad_c = grad.contiguous();
  at::Tensor rois_c = rois.to(grad.scalar_type()).contiguous();
  at::Tensor argmax_c = argmax.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_family_backward_cuda", [&] {
        backward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
            n, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
            mode_has_argmax(mode) ? argmax_c.data_ptr<int>() : nullptr,
            static_cast<at::opmath_type<scalar_t>>(spatial_scale), batch_size,
            static_cast<int>(channels), sz.height, sz.width, sz.pooled_height,
            sz.pooled_width, static_cast<int>(sampling_ratio), aligned, mode,
            grad_input.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, CUDA, m) {
  m.impl(TORCH_SELECTIVE_NAME("segzoo::roi_align_family"), TORCH_FN(forward_cuda));
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::_roi_align_family_backward"),
      TORCH_FN(backward_cuda));
}

}  // namespace ops
}  // namespace segzoo
