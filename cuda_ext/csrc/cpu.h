// The compiled CPU rasterizer (cuda_ext._cpu): projection (project_cpu.cpp), view-dependent SH colours (sh_cpu.cpp)
// and tile compositing (raster_cpu.cpp), each with its backward pass. Twins: dff_gs/render/projection.py,
// dff_gs/render/__init__.py view_colors and dff_gs/render/backend_torch.py.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dff_raster {

// OpenMP threads: torch's setting (torch.set_num_threads), so one knob governs both
inline int num_threads() {
#ifdef _OPENMP
    return std::max(1, at::get_num_threads());
#else
    return 1;
#endif
}

// this thread's number inside a parallel region (0 without OpenMP)
inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// returns means2d [C, N, 2], conics [C, N, 3], depths [C, N], radii [C, N, 2] int32
std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor viewmats, torch::Tensor Ks, int64_t width, int64_t height,
                                           double near_plane, double far_plane, double eps2d);

// returns grad means [N, 3], quats [N, 4], scales [N, 3]
std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor viewmats, torch::Tensor Ks, int64_t width, int64_t height,
                                            double eps2d, torch::Tensor g_means2d, torch::Tensor g_conics,
                                            torch::Tensor g_depths);

// returns colours [C, N, 3] of SH up to `degree` along mean - centre, + 0.5, clamped at 0
torch::Tensor sh_forward(torch::Tensor means, torch::Tensor sh0, torch::Tensor shN, torch::Tensor centers,
                         int64_t degree);

// returns grad means [N, 3], sh0 [N, 1, 3], shN [N, M, 3]
std::vector<torch::Tensor> sh_backward(torch::Tensor means, torch::Tensor sh0, torch::Tensor shN,
                                       torch::Tensor centers, int64_t degree, torch::Tensor g_colors);

}  // namespace dff_raster
