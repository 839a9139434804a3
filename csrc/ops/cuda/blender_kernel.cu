// CUDA kernels of the fused blender.
//
// One thread block per instance. The block stages the instance's attention
// grid (K x Mh x Mw, at most a few KB) in shared memory in the accumulation
// type, and its threads stride over the H x W output pixels, interpolating
// the attentions on the fly: the upsampled (N, K, H, W) attentions of the
// PyTorch composition are never written to global memory. Backward
// accumulates the attention gradient in shared memory too (shared atomics),
// then writes it once. Grids too large for shared memory fall back to
// global-memory reads / atomics with the same per-pixel code.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../blender_common.h"

namespace segzoo {
namespace ops {

namespace {

using namespace blend;

constexpr int kThreads = 256;
constexpr size_t kMaxShared = 48 * 1024;

template <typename scalar_t, typename acc_t, bool kShared>
__global__ void blender_forward_kernel(
    const scalar_t* __restrict__ crops,
    const scalar_t* __restrict__ attn,
    int K,
    int H,
    int W,
    int mh,
    int mw,
    Interp interp,
    scalar_t* __restrict__ out) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t n = blockIdx.x;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int attn_size = K * mh * mw;
  const scalar_t* attn_n = attn + n * attn_size;
  const scalar_t* crop_n = crops + n * K * plane;
  scalar_t* out_n = out + n * plane;
  if (kShared) {
    acc_t* s_attn = reinterpret_cast<acc_t*>(smem_raw);
    for (int i = threadIdx.x; i < attn_size; i += blockDim.x) {
      s_attn[i] = static_cast<acc_t>(attn_n[i]);
    }
    __syncthreads();
    for (int64_t p = threadIdx.x; p < plane; p += blockDim.x) {
      const int y = static_cast<int>(p / W);
      const int x = static_cast<int>(p % W);
      const Tap<acc_t> ty = axis_tap<acc_t>(y, H, mh, interp);
      const Tap<acc_t> tx = axis_tap<acc_t>(x, W, mw, interp);
      out_n[p] = static_cast<scalar_t>(
          blend_pixel<scalar_t, acc_t>(crop_n + p, plane, s_attn, mh, mw, K, ty, tx));
    }
  } else {
    for (int64_t p = threadIdx.x; p < plane; p += blockDim.x) {
      const int y = static_cast<int>(p / W);
      const int x = static_cast<int>(p % W);
      const Tap<acc_t> ty = axis_tap<acc_t>(y, H, mh, interp);
      const Tap<acc_t> tx = axis_tap<acc_t>(x, W, mw, interp);
      out_n[p] = static_cast<scalar_t>(
          blend_pixel<scalar_t, acc_t>(crop_n + p, plane, attn_n, mh, mw, K, ty, tx));
    }
  }
}

struct AtomicAdd {
  template <typename acc_t>
  __device__ void operator()(acc_t* p, acc_t v) const {
    gpuAtomicAdd(p, v);
  }
};

// grad_attn_acc: (N, K, mh, mw) in acc_t, zero-initialised (used directly in
// the global-memory variant; written once per block in the shared variant).
template <typename scalar_t, typename acc_t, bool kShared>
__global__ void blender_backward_kernel(
    const scalar_t* __restrict__ grad,
    const scalar_t* __restrict__ crops,
    const scalar_t* __restrict__ attn,
    int K,
    int H,
    int W,
    int mh,
    int mw,
    Interp interp,
    scalar_t* __restrict__ grad_crops,
    acc_t* __restrict__ grad_attn_acc) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t n = blockIdx.x;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int attn_size = K * mh * mw;
  const scalar_t* attn_n = attn + n * attn_size;
  const scalar_t* crop_n = crops + n * K * plane;
  const scalar_t* g_n = grad + n * plane;
  scalar_t* gc_n = grad_crops + n * K * plane;
  acc_t* ga_n = grad_attn_acc + n * attn_size;
  if (kShared) {
    acc_t* s_attn = reinterpret_cast<acc_t*>(smem_raw);
    acc_t* s_grad = s_attn + attn_size;
    for (int i = threadIdx.x; i < attn_size; i += blockDim.x) {
      s_attn[i] = static_cast<acc_t>(attn_n[i]);
      s_grad[i] = acc_t(0);
    }
    __syncthreads();
    for (int64_t p = threadIdx.x; p < plane; p += blockDim.x) {
      const int y = static_cast<int>(p / W);
      const int x = static_cast<int>(p % W);
      const Tap<acc_t> ty = axis_tap<acc_t>(y, H, mh, interp);
      const Tap<acc_t> tx = axis_tap<acc_t>(x, W, mw, interp);
      blend_pixel_backward<scalar_t, acc_t>(
          static_cast<acc_t>(g_n[p]), crop_n + p, plane, s_attn, mh, mw, K, ty, tx, gc_n + p,
          s_grad, AtomicAdd());
    }
    __syncthreads();
    for (int i = threadIdx.x; i < attn_size; i += blockDim.x) ga_n[i] = s_grad[i];
  } else {
    for (int64_t p = threadIdx.x; p < plane; p += blockDim.x) {
      const int y = static_cast<int>(p / W);
      const int x = static_cast<int>(p % W);
      const Tap<acc_t> ty = axis_tap<acc_t>(y, H, mh, interp);
      const Tap<acc_t> tx = axis_tap<acc_t>(x, W, mw, interp);
      blend_pixel_backward<scalar_t, acc_t>(
          static_cast<acc_t>(g_n[p]), crop_n + p, plane, attn_n, mh, mw, K, ty, tx, gc_n + p,
          ga_n, AtomicAdd());
    }
  }
}

// One block per instance: the grid's x dimension bounds the instance count.
void check_launch(const Sizes& sz) {
  TORCH_CHECK(
      sz.N <= 2147483647LL, "segzoo::blender: at most 2^31 - 1 instances per call on CUDA, got ",
      sz.N);
}

at::Tensor forward_cuda(
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp_name) {
  const Interp interp = parse_interp(interp_name);
  const Sizes sz = check_forward(c10::kCUDA, crops, attentions);
  c10::cuda::CUDAGuard guard(crops.device());
  at::Tensor output = at::empty({sz.N, sz.H, sz.W}, crops.options());
  if (sz.N == 0) return output;
  check_launch(sz);

  at::Tensor crops_c = crops.contiguous();
  at::Tensor attn_c = attentions.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const unsigned int blocks = static_cast<unsigned int>(sz.N);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, crops.scalar_type(), "blender_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem = sizeof(acc_t) * static_cast<size_t>(sz.attn_size());
        const bool shared = smem <= kMaxShared;
        auto kernel = shared ? blender_forward_kernel<scalar_t, acc_t, true>
                             : blender_forward_kernel<scalar_t, acc_t, false>;
        kernel<<<blocks, kThreads, shared ? smem : 0, stream>>>(
            crops_c.data_ptr<scalar_t>(), attn_c.data_ptr<scalar_t>(), sz.K, sz.H, sz.W, sz.mh,
            sz.mw, interp, output.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad,
    const at::Tensor& crops,
    const at::Tensor& attentions,
    c10::string_view interp_name) {
  const Interp interp = parse_interp(interp_name);
  const Sizes sz = check_backward(c10::kCUDA, grad, crops, attentions);
  c10::cuda::CUDAGuard guard(crops.device());
  at::Tensor grad_crops = at::empty_like(crops, at::MemoryFormat::Contiguous);
  if (sz.N == 0) {
    return std::make_tuple(grad_crops, at::empty_like(attentions, at::MemoryFormat::Contiguous));
  }
  check_launch(sz);

  at::Tensor grad_c = grad.to(crops.scalar_type()).contiguous();
  at::Tensor crops_c = crops.contiguous();
  at::Tensor attn_c = attentions.contiguous();
  at::Tensor grad_attn;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const unsigned int blocks = static_cast<unsigned int>(sz.N);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, crops.scalar_type(), "blender_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc_options = attentions.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
        const size_t smem = 2 * sizeof(acc_t) * static_cast<size_t>(sz.attn_size());
        const bool shared = smem <= kMaxShared;
        // the shared variant writes every element; the global one accumulates in place
        at::Tensor acc = shared ? at::empty(attentions.sizes(), acc_options)
                                : at::zeros(attentions.sizes(), acc_options);
        auto kernel = shared ? blender_backward_kernel<scalar_t, acc_t, true>
                             : blender_backward_kernel<scalar_t, acc_t, false>;
        kernel<<<blocks, kThreads, shared ? smem : 0, stream>>>(
            grad_c.data_ptr<scalar_t>(), crops_c.data_ptr<scalar_t>(), attn_c.data_ptr<scalar_t>(),
            sz.K, sz.H, sz.W, sz.mh, sz.mw, interp, grad_crops.data_ptr<scalar_t>(),
            acc.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        grad_attn = acc.to(attentions.scalar_type());
      });
  return std::make_tuple(grad_crops, grad_attn);
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, CUDA, m) {
  m.impl(TORCH_SELECTIVE_NAME("segzoo::blender"), TORCH_FN(forward_cuda));
  m.impl(TORCH_SELECTIVE_NAME("segzoo::_blender_backward"), TORCH_FN(backward_cuda));
}

}  // namespace ops
}  // namespace segzoo
