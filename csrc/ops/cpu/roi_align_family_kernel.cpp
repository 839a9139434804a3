// CPU kernels of the RoIAlign family.
//
// Forward is parallel over RoIs; the bilinear positions and weights of a RoI
// are computed once and reused for every channel (as torchvision does).
// Backward is parallel over channels, so threads never write the same
// gradient element and no atomics are needed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../roi_align_family_common.h"

namespace segzoo {
namespace ops {

namespace {

using namespace roi;

template <typename T>
struct PreCalc {
  int64_t pos1, pos2, pos3, pos4;
  T w1, w2, w3, w4;
};

// Bilinear taps of every sample of every bin of one RoI, bin-major.
template <typename T>
void precalc_roi(
    const AlignGeometry<T>& g,
    int height,
    int width,
    int pooled_height,
    int pooled_width,
    std::vector<PreCalc<T>>* pre) {
  const int nsamp = g.grid_h * g.grid_w;
  pre->resize(static_cast<size_t>(pooled_height) * pooled_width * nsamp);
  size_t k = 0;
  for (int ph = 0; ph < pooled_height; ++ph) {
    for (int pw = 0; pw < pooled_width; ++pw) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        for (int ix = 0; ix < g.grid_w; ++ix) {
          T y, x;
          sample_point(g, ph, pw, iy, ix, &y, &x);
          Bilinear<T> b;
          bilinear_weights(height, width, y, x, &b);
          PreCalc<T>& p = (*pre)[k++];
          p.pos1 = static_cast<int64_t>(b.y_low) * width + b.x_low;
          p.pos2 = static_cast<int64_t>(b.y_low) * width + b.x_high;
          p.pos3 = static_cast<int64_t>(b.y_high) * width + b.x_low;
          p.pos4 = static_cast<int64_t>(b.y_high) * width + b.x_high;
          p.w1 = b.w1;
          p.w2 = b.w2;
          p.w3 = b.w3;
          p.w4 = b.w4;
        }
      }
    }
  }
}

template <typename T>
void precalc_pool_bins(
    const T* roi,
    T spatial_scale,
    int height,
    int width,
    int pooled_height,
    int pooled_width,
    std::vector<PoolBin>* bins) {
  bins->resize(static_cast<size_t>(pooled_height) * pooled_width);
  for (int ph = 0; ph < pooled_height; ++ph)
    for (int pw = 0; pw < pooled_width; ++pw)
      (*bins)[ph * pooled_width + pw] = pool_bin(
          roi, spatial_scale, pooled_height, pooled_width, height, width, ph, pw);
}

// The CPU kernels index the input by rois[:, 0] without bounds checks (the
// CUDA kernels skip RoIs with an invalid index instead).
void check_batch_indices(const at::Tensor& rois, int64_t batch_size) {
  if (rois.size(0) == 0) return;
  auto idx = rois.select(1, 0);
  const double lo = idx.min().item<double>();
  const double hi = idx.max().item<double>();
  TORCH_CHECK(
      lo >= 0 && hi < static_cast<double>(batch_size),
      "segzoo::roi_align_family: rois[:, 0] (batch index) must lie in [0, ",
      batch_size - 1, "], got values in [", lo, ", ", hi, "]");
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned,
    c10::string_view mode_name) {
  const Mode mode = parse_mode(mode_name);
  const Sizes sz = check_forward(c10::kCPU, input, rois, pooled_height, pooled_width);
  const int64_t num_rois = sz.num_rois;
  const int64_t channels = sz.channels;
  const int height = sz.height;
  const int width = sz.width;
  const int PH = sz.pooled_height;
  const int PW = sz.pooled_width;

  // every element is written below (empty RoIPool bins included)
  at::Tensor output = at::empty({num_rois, channels, PH, PW}, input.options());
  at::Tensor argmax = mode_has_argmax(mode)
      ? at::empty({num_rois, channels, PH, PW}, input.options().dtype(at::kInt))
      : at::empty({0}, input.options().dtype(at::kInt));
  if (output.numel() == 0) return std::make_tuple(output, argmax);
  check_batch_indices(rois, sz.batch_size);

  at::Tensor input_c = input.contiguous();
  at::Tensor rois_c = rois.contiguous();
  const int64_t plane = sz.plane();
  const int64_t bins = sz.bins();

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_family_forward_cpu", [&] {
    using T = scalar_t;
    const T* in = input_c.data_ptr<T>();
    const T* rp = rois_c.data_ptr<T>();
    T* out = output.data_ptr<T>();
    int* am = mode_has_argmax(mode) ? argmax.data_ptr<int>() : nullptr;
    const T scale = static_cast<T>(spatial_scale);

    at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
      std::vector<PreCalc<T>> pre;
      std::vector<PoolBin> pbins;
      for (int64_t n = begin; n < end; ++n) {
        const T* roi = rp + n * 5;
        const int64_t b = static_cast<int64_t>(roi[0]);
        const T* in_b = in + b * channels * plane;
        T* out_n = out + n * channels * bins;
        int* am_n = am ? am + n * channels * bins : nullptr;

        if (mode == kPool) {
          precalc_pool_bins(roi, scale, height, width, PH, PW, &pbins);
          for (int64_t c = 0; c < channels; ++c) {
            const T* src = in_b + c * plane;
            for (int64_t k = 0; k < bins; ++k) {
              const PoolBin& bin = pbins[k];
              if (bin.empty()) {
                out_n[c * bins + k] = 0;
                am_n[c * bins + k] = -1;
                continue;
              }
              T best = -std::numeric_limits<T>::max();
              int best_idx = -1;
              for (int h = bin.hstart; h < bin.hend; ++h)
                for (int w = bin.wstart; w < bin.wend; ++w) {
                  const int idx = h * width + w;
                  if (src[idx] > best) {
                    best = src[idx];
                    best_idx = idx;
                  }
                }
              out_n[c * bins + k] = best;
              am_n[c * bins + k] = best_idx;
            }
          }
          continue;
        }

        const AlignGeometry<T> g = align_geometry(
            roi, scale, PH, PW, static_cast<int>(sampling_ratio), aligned, mode);
        precalc_roi(g, height, width, PH, PW, &pre);
        const int nsamp = g.grid_h * g.grid_w;
        const T inv_count = static_cast<T>(1) / static_cast<T>(nsamp > 0 ? nsamp : 1);
        for (int64_t c = 0; c < channels; ++c) {
          const T* src = in_b + c * plane;
          const PreCalc<T>* p = pre.data();
          for (int64_t k = 0; k < bins; ++k) {
            if (mode == kAlignMax) {
              // branchless running max (the comparisons are data-dependent and
              // would mispredict); ties keep the first sample, as in RoIPool
              T best = 0;
              int best_s = -1;
              if (nsamp > 0) {
                best = p->w1 * src[p->pos1] + p->w2 * src[p->pos2] +
                    p->w3 * src[p->pos3] + p->w4 * src[p->pos4];
                best_s = 0;
                ++p;
              }
              for (int s = 1; s < nsamp; ++s, ++p) {
                const T v = p->w1 * src[p->pos1] + p->w2 * src[p->pos2] +
                    p->w3 * src[p->pos3] + p->w4 * src[p->pos4];
                const bool better = v > best;
                best = better ? v : best;
                best_s = better ? s : best_s;
              }
              out_n[c * bins + k] = best;
              am_n[c * bins + k] = best_s;
            } else {
              T sum = 0;
              for (int s = 0; s < nsamp; ++s, ++p)
                sum += p->w1 * src[p->pos1] + p->w2 * src[p->pos2] +
                    p->w3 * src[p->pos3] + p->w4 * src[p->pos4];
              out_n[c * bins + k] = sum * inv_count;
            }
          }
        }
      }
    });
  });
  return std::make_tuple(output, argmax);
}

at::Tensor backward_cpu(
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
      c10::kCPU, grad, rois, argmax, mode, pooled_height, pooled_width, batch_size, channels,
      height, width);
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t num_rois = sz.num_rois;
  if (grad.numel() == 0 || num_rois == 0) return grad_input;

  at::Tensor grad_c = grad.contiguous();
  at::Tensor rois_c = rois.to(grad.scalar_type()).contiguous();
  at::Tensor argmax_c = argmax.contiguous();
  const int H = sz.height;
  const int W = sz.width;
  const int PH = sz.pooled_height;
  const int PW = sz.pooled_width;
  const int64_t plane = sz.plane();
  const int64_t bins = sz.bins();

  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_align_family_backward_cpu", [&] {
    using T = scalar_t;
    const T* g = grad_c.data_ptr<T>();
    const T* rp = rois_c.data_ptr<T>();
    const int* am = mode_has_argmax(mode) ? argmax_c.data_ptr<int>() : nullptr;
    T* gi = grad_input.data_ptr<T>();
    const T scale = static_cast<T>(spatial_scale);
    const int64_t grain = std::max<int64_t>(1, channels / (at::get_num_threads() * 4));

    at::parallel_for(0, channels, grain, [&](int64_t c_begin, int64_t c_end) {
      std::vector<PreCalc<T>> pre;
      for (int64_t n = 0; n < num_rois; ++n) {
        const T* roi = rp + n * 5;
        const int64_t b = static_cast<int64_t>(roi[0]);
        if (b < 0 || b >= batch_size) continue;
        if (mode == kPool) {
          for (int64_t c = c_begin; c < c_end; ++c) {
            T* dst = gi + (b * channels + c) * plane;
            const T* gsrc = g + (n * channels + c) * bins;
            const int* asrc = am + (n * channels + c) * bins;
            for (int64_t k = 0; k < bins; ++k)
              if (asrc[k] >= 0) dst[asrc[k]] += gsrc[k];
          }
          continue;
        }
        const AlignGeometry<T> geo = align_geometry(
            roi, scale, PH, PW, static_cast<int>(sampling_ratio), aligned, mode);
        precalc_roi(geo, H, W, PH, PW, &pre);
        const int nsamp = geo.grid_h * geo.grid_w;
        const T inv_count = static_cast<T>(1) / static_cast<T>(nsamp > 0 ? nsamp : 1);
        for (int64_t c = c_begin; c < c_end; ++c) {
          T* dst = gi + (b * channels + c) * plane;
          const T* gsrc = g + (n * channels + c) * bins;
          if (mode == kAlignMax) {
            const int* asrc = am + (n * channels + c) * bins;
            for (int64_t k = 0; k < bins; ++k) {
              const int s = asrc[k];
              if (s < 0) continue;
              const PreCalc<T>& p = pre[k * nsamp + s];
              const T gv = gsrc[k];
              dst[p.pos1] += p.w1 * gv;
              dst[p.pos2] += p.w2 * gv;
              dst[p.pos3] += p.w3 * gv;
              dst[p.pos4] += p.w4 * gv;
            }
          } else {
            const PreCalc<T>* p = pre.data();
            for (int64_t k = 0; k < bins; ++k) {
              const T gv = gsrc[k] * inv_count;
              for (int s = 0; s < nsamp; ++s, ++p) {
                dst[p->pos1] += p->w1 * gv;
                dst[p->pos2] += p->w2 * gv;
                dst[p->pos3] += p->w3 * gv;
                dst[p->pos4] += p->w4 * gv;
              }
            }
          }
        }
      }
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(segzoo, CPU, m) {
  m.impl(TORCH_SELECTIVE_NAME("segzoo::roi_align_family"), TORCH_FN(forward_cpu));
  m.impl(
      TORCH_SELECTIVE_NAME("segzoo::_roi_align_family_backward"),
      TORCH_FN(backward_cpu));
}

}  // namespace ops
}  // namespace segzoo
