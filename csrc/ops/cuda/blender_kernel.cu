// CUDA kernels of the fused blender.
//
// One thread block per instance. The block stages the instance's attention
// grid (K x Mh x Mw, at most a few KB) in shared memory in the accumulation
// type, and its threads stride over the H x W output pixels, interpolating
// the attentions on the fly: the upsampled (N, K, H, W) attentions of the
// PyTorch composition are never written to global memory. Backward
// accumulates the attention gradient in shared memory too (shared atomics),
// then writes it once. Grids too large for shared memory fall back to
// global-memory reads / atomics: the same kernels, instantiated for
// Staging::kGlobal, run the same pixel loop.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <type_traits>

#include "../blender_common.h"

namespace segzoo {
namespace ops {

namespace {

using namespace blend;

constexpr int kThreads = 256;
constexpr size_t kMaxShared = 48 * 1024;

// Where a block reads its instance's attentions from (and, in backward, where
// it accumulates their gradient).
enum class Staging {
  kShared,  // staged in shared memory in acc_t (small grids: the common case)
  kGlobal,  // read in place from global memory; gradient by global atomics
};

// Element type of the attentions as the pixel loop reads them.
template <Staging staging, typename scalar_t, typename acc_t>
using attn_elem_t = std::conditional_t<staging == Staging::kShared, acc_t, scalar_t>;

// The pixel loop of both kernels: the block's threads stride over the H x W
// output pixels of one instance; f(p, ty, tx) gets the flat pixel index and
// its interpolation taps on the mh x mw attention grid.
template <typename acc_t, typename F>
__device__ inline void for_each_pixel(int H, int W, int mh, int mw, Interp interp, const F& f) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  for (int64_t p = threadIdx.x; p < plane; p += blockDim.x) {
    const int y = static_cast<int>(p / W);
    const int x = static_cast<int>(p % W);
    const Tap<acc_t> ty = axis_tap<acc_t>(y, H, mh, interp);
    const Tap<acc_t> tx = axis_tap<acc_t>(x, W, mw, interp);
    f(p, ty, tx);
  }
}

// Copies the instance's attentions to shared memory in acc_t (no barrier).
template <typename scalar_t, typename acc_t>
__device__ inline void stage_attentions(const scalar_t* attn_n, int attn_size, acc_t* s_attn) {
  for (int i = threadIdx.x; i < attn_size; i += blockDim.x) {
    s_attn[i] = static_cast<acc_t>(attn_n[i]);
  }
}

// One block per instance.
template <typename scalar_t, typename acc_t, Staging staging>
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

  const attn_elem_t<staging, scalar_t, acc_t>* a;
  if constexpr (staging == Staging::kShared) {
    acc_t* s_attn = reinterpret_cast<acc_t*>(smem_raw);
    stage_attentions(attn_n, attn_size, s_attn);
    __syncthreads();
    a = s_attn;
  } else {
    a = attn_n;
  }
  for_each_pixel<acc_t>(
      H, W, mh, mw, interp, [&](int64_t p, const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
        out_n[p] = static_cast<scalar_t>(
            blend_pixel<scalar_t, acc_t>(crop_n + p, plane, a, mh, mw, K, ty, tx));
      });
}

struct AtomicAdd {
  template <typename acc_t>
  __device__ void operator()(acc_t* p, acc_t v) const {
    gpuAtomicAdd(p, v);
  }
};

// One block per instance. grad_attn_acc: (N, K, mh, mw) in acc_t; zero-
// initialised by the caller for Staging::kGlobal (accumulated in place), any
// content for Staging::kShared (accumulated in shared memory, written once).
template <typename scalar_t, typename acc_t, Staging staging>
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

  const attn_elem_t<staging, scalar_t, acc_t>* a;
  acc_t* ga;
  if constexpr (staging == Staging::kShared) {
    acc_t* s_attn = reinterpret_cast<acc_t*>(smem_raw);
    acc_t* s_grad = s_attn + attn_size;
    stage_attentions(attn_n, attn_size, s_attn);
    for (int i = threadIdx.x; i < attn_size; i += blockDim.x) s_grad[i] = acc_t(0);
    __syncthreads();
    a = s_attn;
    ga = s_grad;
  } else {
    a = attn_n;
    ga = ga_n;
  }
  for_each_pixel<acc_t>(
      H, W, mh, mw, interp, [&](int64_t p, const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
        blend_pixel_backward<scalar_t, acc_t>(
            static_cast<acc_t>(g_n[p]), crop_n + p, plane, a, mh, mw, K, ty, tx, gc_n + p, ga,
            AtomicAdd());
      });
  if constexpr (staging == Staging::kShared) {
    __syncthreads();
    for (int i = threadIdx.x; i < attn_size; i += blockDim.x) ga_n[i] = ga[i];
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
        auto kernel = shared ? blender_forward_kernel<scalar_t, acc_t, Staging::kShared>
                             : blender_forward_kernel<scalar_t, acc_t, Staging::kGlobal>;
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
        auto kernel = shared ? blender_backward_kernel<scalar_t, acc_t, Staging::kShared>
                             : blender_backward_kernel<scalar_t, acc_t, Staging::kGlobal>;
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
