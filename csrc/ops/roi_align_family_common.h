// Geometry and bilinear sampling shared by the CPU and CUDA kernels of the
// RoIAlign family (RoIAlign avg / max, RoIWarp, RoIPool), and the checks and
// sizes shared by their host wrappers.
//
// Box format: rois is (K, 5) = [batch_idx, x1, y1, x2, y2] in image coordinates.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>
#include <math.h>
#include <cmath>

namespace segzoo {
namespace ops {
namespace roi {

// The op's `str mode` argument, parsed once per call by parse_mode().
enum Mode {
  kAlignAvg,  // "avg":  RoIAlign, average of bilinear samples (torchvision roi_align)
  kAlignMax,  // "max":  RoIAlign, max of the same bilinear samples
  kWarp,      // "warp": box quantised to the feature grid, then unaligned RoIAlign avg
  kPool,      // "pool": RoIPool, quantised box and bins, max (torchvision roi_pool)
};

inline Mode parse_mode(c10::string_view name) {
  if (name == "avg") return kAlignAvg;
  if (name == "max") return kAlignMax;
  if (name == "warp") return kWarp;
  if (name == "pool") return kPool;
  C10_THROW_ERROR(
      ValueError,
      c10::str(
          "segzoo::roi_align_family: unknown mode '", name,
          "' (expected 'avg', 'max', 'warp' or 'pool')"));
}

C10_HOST_DEVICE inline int min_int(int a, int b) {
  return a < b ? a : b;
}
C10_HOST_DEVICE inline int max_int(int a, int b) {
  return a > b ? a : b;
}

inline bool mode_has_argmax(Mode mode) {
  return mode == kAlignMax || mode == kPool;
}

// Sampling grid of one RoI for the bilinear modes (avg, max, warp).
template <typename T>
struct AlignGeometry {
  T start_h;
  T start_w;
  T bin_h;
  T bin_w;
  int grid_h;
  int grid_w;
};

template <typename T>
C10_HOST_DEVICE inline AlignGeometry<T> align_geometry(
    const T* roi,  // points at [batch_idx, x1, y1, x2, y2]
    T spatial_scale,
    int pooled_height,
    int pooled_width,
    int sampling_ratio,
    bool aligned,
    Mode mode) {
  T x1, y1, x2, y2;
  if (mode == kWarp) {
    // RoIWarp (MNC): the box is first snapped to the feature grid, then
    // sampled like unaligned RoIAlign.
    x1 = round(roi[1] * spatial_scale);
    y1 = round(roi[2] * spatial_scale);
    x2 = round(roi[3] * spatial_scale);
    y2 = round(roi[4] * spatial_scale);
    aligned = false;
  } else {
    const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
    x1 = roi[1] * spatial_scale - offset;
    y1 = roi[2] * spatial_scale - offset;
    x2 = roi[3] * spatial_scale - offset;
    y2 = roi[4] * spatial_scale - offset;
  }
  T roi_w = x2 - x1;
  T roi_h = y2 - y1;
  if (!aligned) {
    // Legacy (Detectron1 / torchvision aligned=False) behaviour: at least 1x1.
    roi_w = roi_w > static_cast<T>(1) ? roi_w : static_cast<T>(1);
    roi_h = roi_h > static_cast<T>(1) ? roi_h : static_cast<T>(1);
  }
  AlignGeometry<T> g;
  g.start_h = y1;
  g.start_w = x1;
  g.bin_h = roi_h / static_cast<T>(pooled_height);
  g.bin_w = roi_w / static_cast<T>(pooled_width);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int>(ceil(roi_h / pooled_height));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int>(ceil(roi_w / pooled_width));
  return g;
}

// Coordinates of sample (iy, ix) of bin (ph, pw).
template <typename T>
C10_HOST_DEVICE inline void sample_point(
    const AlignGeometry<T>& g, int ph, int pw, int iy, int ix, T* y, T* x) {
  *y = g.start_h + ph * g.bin_h +
      (static_cast<T>(iy) + static_cast<T>(0.5)) * g.bin_h / static_cast<T>(g.grid_h);
  *x = g.start_w + pw * g.bin_w +
      (static_cast<T>(ix) + static_cast<T>(0.5)) * g.bin_w / static_cast<T>(g.grid_w);
}

// Bilinear weights of point (y, x) on an H x W map, torchvision's convention:
// points more than one pixel outside the map contribute nothing, points in the
// border band are clamped to the edge. Returns false when the point is outside.
template <typename T>
struct Bilinear {
  int y_low, x_low, y_high, x_high;
  T w1, w2, w3, w4;  // (y_low,x_low) (y_low,x_high) (y_high,x_low) (y_high,x_high)
};

template <typename T>
C10_HOST_DEVICE inline bool bilinear_weights(
    int height, int width, T y, T x, Bilinear<T>* b) {
  if (y < static_cast<T>(-1.0) || y > static_cast<T>(height) ||
      x < static_cast<T>(-1.0) || x > static_cast<T>(width)) {
    b->y_low = b->x_low = b->y_high = b->x_high = 0;
    b->w1 = b->w2 = b->w3 = b->w4 = static_cast<T>(0);
    return false;
  }
  if (y <= static_cast<T>(0)) y = static_cast<T>(0);
  if (x <= static_cast<T>(0)) x = static_cast<T>(0);
  int y_low = static_cast<int>(y);
  int x_low = static_cast<int>(x);
  int y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - y_low;
  const T lx = x - x_low;
  const T hy = static_cast<T>(1) - ly;
  const T hx = static_cast<T>(1) - lx;
  b->y_low = y_low;
  b->x_low = x_low;
  b->y_high = y_high;
  b->x_high = x_high;
  b->w1 = hy * hx;
  b->w2 = hy * lx;
  b->w3 = ly * hx;
  b->w4 = ly * lx;
  return true;
}

// RoIPool bin (torchvision roi_pool): quantised box and bins, clipped to the map.
struct PoolBin {
  int hstart, hend, wstart, wend;
  C10_HOST_DEVICE bool empty() const {
    return hend <= hstart || wend <= wstart;
  }
};

template <typename T>
C10_HOST_DEVICE inline PoolBin pool_bin(
    const T* roi,
    T spatial_scale,
    int pooled_height,
    int pooled_width,
    int height,
    int width,
    int ph,
    int pw) {
  const int roi_start_w = static_cast<int>(round(roi[1] * spatial_scale));
  const int roi_start_h = static_cast<int>(round(roi[2] * spatial_scale));
  const int roi_end_w = static_cast<int>(round(roi[3] * spatial_scale));
  const int roi_end_h = static_cast<int>(round(roi[4] * spatial_scale));
  const int roi_w = roi_end_w - roi_start_w + 1 > 1 ? roi_end_w - roi_start_w + 1 : 1;
  const int roi_h = roi_end_h - roi_start_h + 1 > 1 ? roi_end_h - roi_start_h + 1 : 1;
  const T bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_height);
  const T bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_width);
  int hstart = static_cast<int>(floor(static_cast<T>(ph) * bin_h));
  int wstart = static_cast<int>(floor(static_cast<T>(pw) * bin_w));
  int hend = static_cast<int>(ceil(static_cast<T>(ph + 1) * bin_h));
  int wend = static_cast<int>(ceil(static_cast<T>(pw + 1) * bin_w));
  PoolBin bin;
  bin.hstart = min_int(max_int(hstart + roi_start_h, 0), height);
  bin.hend = min_int(max_int(hend + roi_start_h, 0), height);
  bin.wstart = min_int(max_int(wstart + roi_start_w, 0), width);
  bin.wend = min_int(max_int(wend + roi_start_w, 0), width);
  return bin;
}

// ---------------------------------------------------------------------------
// Host side: sizes of one call and the checks of the CPU and CUDA wrappers.

// Sizes of one call. Forward reads them from input and rois; backward gets the
// input's sizes as arguments and the RoI count from rois.
struct Sizes {
  int64_t batch_size;
  int64_t channels;
  int height;
  int width;
  int64_t num_rois;
  int pooled_height;
  int pooled_width;

  int64_t plane() const {
    return static_cast<int64_t>(height) * width;
  }
  int64_t bins() const {
    return static_cast<int64_t>(pooled_height) * pooled_width;
  }
};

namespace detail {

inline void check_device(c10::DeviceType backend, const char* name, const at::Tensor& t) {
  TORCH_CHECK(
      t.device().type() == backend, "segzoo::roi_align_family: ", name, " must be a ", backend,
      " tensor, got one on ", t.device());
}

inline void check_rois_and_output_size(
    const at::Tensor& rois,
    int64_t pooled_height,
    int64_t pooled_width) {
  TORCH_CHECK(
      rois.dim() == 2 && rois.size(1) == 5,
      "segzoo::roi_align_family: rois must be (K, 5) [batch_idx, x1, y1, x2, y2], got ",
      rois.sizes());
  TORCH_CHECK(
      pooled_height > 0 && pooled_width > 0,
      "segzoo::roi_align_family: output size must be positive, got (", pooled_height, ", ",
      pooled_width, ")");
}

}  // namespace detail

// Checks of segzoo::roi_align_family (CPU and CUDA wrappers).
inline Sizes check_forward(
    c10::DeviceType backend,
    const at::Tensor& input,
    const at::Tensor& rois,
    int64_t pooled_height,
    int64_t pooled_width) {
  detail::check_device(backend, "input", input);
  detail::check_device(backend, "rois", rois);
  TORCH_CHECK(
      input.device() == rois.device(), "segzoo::roi_align_family: input (", input.device(),
      ") and rois (", rois.device(), ") must be on the same device");
  TORCH_CHECK(
      input.dim() == 4, "segzoo::roi_align_family: input must be (N, C, H, W), got ",
      input.sizes());
  TORCH_CHECK(
      input.scalar_type() == rois.scalar_type(),
      "segzoo::roi_align_family: input and rois must have the same dtype, got ",
      input.scalar_type(), " and ", rois.scalar_type());
  detail::check_rois_and_output_size(rois, pooled_height, pooled_width);
  return Sizes{
      input.size(0),
      input.size(1),
      static_cast<int>(input.size(2)),
      static_cast<int>(input.size(3)),
      rois.size(0),
      static_cast<int>(pooled_height),
      static_cast<int>(pooled_width)};
}

// Checks of segzoo::_roi_align_family_backward (CPU and CUDA wrappers). grad
// is the gradient of the forward output; argmax is the forward's argmax (used
// by the max modes only).
inline Sizes check_backward(
    c10::DeviceType backend,
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    Mode mode,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  detail::check_device(backend, "grad", grad);
  detail::check_device(backend, "rois", rois);
  TORCH_CHECK(
      grad.device() == rois.device(), "segzoo::roi_align_family: grad (", grad.device(),
      ") and rois (", rois.device(), ") must be on the same device");
  detail::check_rois_and_output_size(rois, pooled_height, pooled_width);
  const Sizes s{
      batch_size,
      channels,
      static_cast<int>(height),
      static_cast<int>(width),
      rois.size(0),
      static_cast<int>(pooled_height),
      static_cast<int>(pooled_width)};
  TORCH_CHECK(
      grad.dim() == 4 && grad.size(0) == s.num_rois && grad.size(1) == channels &&
          grad.size(2) == pooled_height && grad.size(3) == pooled_width,
      "segzoo::roi_align_family backward: grad must be (K, C, PH, PW) = (", s.num_rois, ", ",
      channels, ", ", pooled_height, ", ", pooled_width, "), got ", grad.sizes());
  if (mode_has_argmax(mode)) {
    TORCH_CHECK(
        argmax.device() == grad.device() && argmax.scalar_type() == at::kInt &&
            argmax.sizes() == grad.sizes(),
        "segzoo::roi_align_family backward: argmax must be an int32 tensor of grad's shape ",
        grad.sizes(), " on ", grad.device(), ", got ", argmax.scalar_type(), " ",
        argmax.sizes(), " on ", argmax.device());
  }
  return s;
}

}  // namespace roi
}  // namespace ops
}  // namespace segzoo
