// Feature lifting: accumulate teacher features onto Gaussians, weighted by their alpha-compositing weight.
// The PyTorch twin of every function here is in cuda_ext/reference.py; tests compare the two.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

namespace dff_lift {

// Largest top_k the kernel supports (the per-pixel top-k list lives in a fixed-size array).
constexpr int kMaxTopK = 32;
// Gaussians composited per round before their weighted features are reduced.
constexpr int kBatch = 32;

// Walks every (camera, tile) like the rasterizer (gsplat's tile offsets and depth-sorted flatten ids) and adds,
// for every Gaussian g,  sum_pixels w_gp * pw_p * F(p)  to feat_sum[g] and  sum_pixels w_gp * pw_p  to
// weight_sum[g], with w_gp = alpha_gp * T_gp the compositing weight, pw_p the pixel weight and F(p) the feature
// map bilinearly resampled (PyTorch's align_corners=False) to the render resolution. Nothing is rendered.
//
//   means2d      [I, N, 2] float32     projected centres (pixels)
//   conics       [I, N, 3] float32     inverse 2D covariance (a, b, c)
//   opacities    [I, N] or [N] float32
//   maps         [I, mh, mw, C] float32 | float16   feature maps, any resolution
//   pix_weights  [I, H, W] float32 >= 0 or None     per-pixel weight (0 where the teacher has no feature: skipped)
//   tile_offsets [I, tiles_y, tiles_x] int32         start of each tile's list in flatten_ids
//   flatten_ids  [n_isects] int32                    camera * N + gaussian, sorted by (camera, tile, depth)
//   top_k        0 = every contributor; k in 1..kMaxTopK = only each pixel's k largest weights (ties: front first)
//   feat_sum     [N, C] float32  accumulated in place
//   weight_sum   [N] float32     accumulated in place
void lift_accumulate(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                     const at::Tensor& maps, const c10::optional<at::Tensor>& pix_weights,
                     const at::Tensor& tile_offsets, const at::Tensor& flatten_ids, int64_t width, int64_t height,
                     int64_t tile_size, int64_t top_k, at::Tensor& feat_sum, at::Tensor& weight_sum);

// out[g, c] = feat_sum[g, c] / weight_sum[g] where weight_sum[g] > eps, else 0. Writes every element of out.
//   feat_sum [N, C] float32, weight_sum [N] float32, out [N, C] float32
void lift_normalize(const at::Tensor& feat_sum, const at::Tensor& weight_sum, double eps, at::Tensor& out);

}  // namespace dff_lift
