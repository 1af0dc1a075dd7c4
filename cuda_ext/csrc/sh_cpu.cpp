// Colours of the Gaussians' spherical harmonics along each camera's view directions on the CPU (OpenMP), forward and
// backward, with the conventions of its twin dff_gs/render/__init__.py view_colors (dff_gs/render/sh.py eval_sh):
// direction = mean - camera centre, normalised (norm clamped at 1e-12), 3DGS / gsplat basis constants and signs,
// colour = max(SH value + 0.5, 0). The coefficients come as sh0 [N, 1, 3] and shN [N, M, 3] (the model's two
// parameters, so nothing is concatenated); degrees 0..3. The backward pass runs per Gaussian over the cameras:
// deterministic.
#include "cpu.h"

#include <cmath>

namespace dff_raster {

namespace {

constexpr double kC0 = 0.28209479177387814;
constexpr double kC1 = 0.4886025119029199;
constexpr double kC2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                           0.5462742152960396};
constexpr double kC3[7] = {-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                           -0.4570457994644658, 1.445305721320277, -0.5900435899266435};

// the basis b[0 .. (degree + 1)^2) at the unit direction (x, y, z)
template <typename T>
inline void sh_basis(int degree, T x, T y, T z, T* b) {
    b[0] = T(kC0);
    if (degree < 1) return;
    b[1] = -T(kC1) * y;
    b[2] = T(kC1) * z;
    b[3] = -T(kC1) * x;
    if (degree < 2) return;
    const T xx = x * x, yy = y * y, zz = z * z;
    b[4] = T(kC2[0]) * x * y;
    b[5] = T(kC2[1]) * y * z;
    b[6] = T(kC2[2]) * (2 * zz - xx - yy);
    b[7] = T(kC2[3]) * x * z;
    b[8] = T(kC2[4]) * (xx - yy);
    if (degree < 3) return;
    b[9] = T(kC3[0]) * y * (3 * xx - yy);
    b[10] = T(kC3[1]) * x * y * z;
    b[11] = T(kC3[2]) * y * (4 * zz - xx - yy);
    b[12] = T(kC3[3]) * z * (2 * zz - 3 * xx - 3 * yy);
    b[13] = T(kC3[4]) * x * (4 * zz - xx - yy);
    b[14] = T(kC3[5]) * z * (xx - yy);
    b[15] = T(kC3[6]) * x * (xx - 3 * yy);
}

// gradient (gx, gy, gz) of sum_k gb[k] b[k] with respect to the unit direction (x, y, z)
template <typename T>
inline void sh_basis_grad(int degree, T x, T y, T z, const T* gb, T& gx, T& gy, T& gz) {
    gx = gy = gz = 0;
    if (degree < 1) return;
    gy -= T(kC1) * gb[1];
    gz += T(kC1) * gb[2];
    gx -= T(kC1) * gb[3];
    if (degree < 2) return;
    const T xx = x * x, yy = y * y, zz = z * z;
    gx += T(kC2[0]) * y * gb[4];
    gy += T(kC2[0]) * x * gb[4];
    gy += T(kC2[1]) * z * gb[5];
    gz += T(kC2[1]) * y * gb[5];
    gx += -2 * T(kC2[2]) * x * gb[6];
    gy += -2 * T(kC2[2]) * y * gb[6];
    gz += 4 * T(kC2[2]) * z * gb[6];
    gx += T(kC2[3]) * z * gb[7];
    gz += T(kC2[3]) * x * gb[7];
    gx += 2 * T(kC2[4]) * x * gb[8];
    gy += -2 * T(kC2[4]) * y * gb[8];
    if (degree < 3) return;
    gx += 6 * T(kC3[0]) * x * y * gb[9];
    gy += T(kC3[0]) * (3 * xx - 3 * yy) * gb[9];
    gx += T(kC3[1]) * y * z * gb[10];
    gy += T(kC3[1]) * x * z * gb[10];
    gz += T(kC3[1]) * x * y * gb[10];
    gx += -2 * T(kC3[2]) * x * y * gb[11];
    gy += T(kC3[2]) * (4 * zz - xx - 3 * yy) * gb[11];
    gz += 8 * T(kC3[2]) * y * z * gb[11];
    gx += -6 * T(kC3[3]) * x * z * gb[12];
    gy += -6 * T(kC3[3]) * y * z * gb[12];
    gz += T(kC3[3]) * (6 * zz - 3 * xx - 3 * yy) * gb[12];
    gx += T(kC3[4]) * (4 * zz - 3 * xx - yy) * gb[13];
    gy += -2 * T(kC3[4]) * x * y * gb[13];
    gz += 8 * T(kC3[4]) * x * z * gb[13];
    gx += 2 * T(kC3[5]) * x * z * gb[14];
    gy += -2 * T(kC3[5]) * y * z * gb[14];
    gz += T(kC3[5]) * (xx - yy) * gb[14];
    gx += T(kC3[6]) * (3 * xx - 3 * yy) * gb[15];
    gy += -6 * T(kC3[6]) * x * y * gb[15];
}

// unit direction from the camera centre to the mean, and the (clamped) norm it was divided by
template <typename T>
inline T view_dir(const T* mean, const T* centre, T* d) {
    const T dx = mean[0] - centre[0], dy = mean[1] - centre[1], dz = mean[2] - centre[2];
    const T n = std::max(std::sqrt(dx * dx + dy * dy + dz * dz), T(1e-12));
    d[0] = dx / n;
    d[1] = dy / n;
    d[2] = dz / n;
    return n;
}

// SH value (before + 0.5 and the clamp) of Gaussian n, channel ch
template <typename T>
inline T sh_value(const T* b, int K, const T* sh0, const T* shN, int64_t M, int64_t n, int ch) {
    T v = b[0] * sh0[3 * n + ch];
    for (int k = 1; k < K; ++k) v += b[k] * shN[(n * M + k - 1) * 3 + ch];
    return v;
}

}  // namespace

static void check_sh(const torch::Tensor& means, const torch::Tensor& sh0, const torch::Tensor& shN,
                     const torch::Tensor& centers, int64_t degree) {
    TORCH_CHECK(means.device().is_cpu(), "sh_colors_cpu: tensors must be on the CPU");
    TORCH_CHECK(degree >= 0 && degree <= 3, "sh_colors_cpu: degree must be 0..3, got ", degree);
    TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "sh_colors_cpu: means must be [N, 3]");
    const int64_t N = means.size(0);
    TORCH_CHECK(sh0.sizes() == torch::IntArrayRef({N, 1, 3}), "sh_colors_cpu: sh0 must be [N, 1, 3]");
    TORCH_CHECK(shN.dim() == 3 && shN.size(0) == N && shN.size(2) == 3 && shN.size(1) >= (degree + 1) * (degree + 1) - 1,
                "sh_colors_cpu: shN must be [N, M, 3] with M >= (degree + 1)^2 - 1");
    TORCH_CHECK(centers.dim() == 2 && centers.size(1) == 3, "sh_colors_cpu: centers must be [C, 3]");
    for (const auto* t : {&means, &sh0, &shN, &centers})
        TORCH_CHECK(t->scalar_type() == means.scalar_type() && t->is_contiguous(),
                    "sh_colors_cpu: inputs must be contiguous and of one floating dtype");
}

template <typename T>
static void sh_forward_impl(const T* means, const T* sh0, const T* shN, const T* centers, int64_t C, int64_t N,
                            int64_t M, int degree, T* out) {
    const int K = (degree + 1) * (degree + 1);
#pragma omp parallel for num_threads(num_threads()) schedule(static) collapse(2)
    for (int64_t c = 0; c < C; ++c)
        for (int64_t n = 0; n < N; ++n) {
            T d[3], b[16];
            view_dir(means + 3 * n, centers + 3 * c, d);
            sh_basis(degree, d[0], d[1], d[2], b);
            for (int ch = 0; ch < 3; ++ch)
                out[(c * N + n) * 3 + ch] = std::max(sh_value(b, K, sh0, shN, M, n, ch) + T(0.5), T(0));
        }
}

template <typename T>
static void sh_backward_impl(const T* means, const T* sh0, const T* shN, const T* centers, int64_t C, int64_t N,
                             int64_t M, int degree, const T* g_colors, T* g_means, T* g_sh0, T* g_shN) {
    const int K = (degree + 1) * (degree + 1);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t c = 0; c < C; ++c) {
            T d[3], b[16], gb[16], gv[3], gd[3];
            const T norm = view_dir(means + 3 * n, centers + 3 * c, d);
            sh_basis(degree, d[0], d[1], d[2], b);
            for (int ch = 0; ch < 3; ++ch) {  // through the clamp: gradient where value + 0.5 >= 0
                const T v = sh_value(b, K, sh0, shN, M, n, ch) + T(0.5);
                gv[ch] = v >= 0 ? g_colors[(c * N + n) * 3 + ch] : T(0);
            }
            for (int k = 0; k < K; ++k) {
                const T* coef = k == 0 ? sh0 + 3 * n : shN + (n * M + k - 1) * 3;
                T* gcoef = k == 0 ? g_sh0 + 3 * n : g_shN + (n * M + k - 1) * 3;
                gb[k] = 0;
                for (int ch = 0; ch < 3; ++ch) {
                    gcoef[ch] += b[k] * gv[ch];
                    gb[k] += coef[ch] * gv[ch];
                }
            }
            sh_basis_grad(degree, d[0], d[1], d[2], gb, gd[0], gd[1], gd[2]);
            // through the normalisation d = v / max(|v|, 1e-12): (gd - d (d . gd)) / |v|, or gd / 1e-12 if clamped
            const T dot = norm > T(1e-12) ? d[0] * gd[0] + d[1] * gd[1] + d[2] * gd[2] : T(0);
            for (int j = 0; j < 3; ++j) g_means[3 * n + j] += (gd[j] - d[j] * dot) / norm;
        }
    }
}

// returns colours [C, N, 3]
torch::Tensor sh_forward(torch::Tensor means, torch::Tensor sh0, torch::Tensor shN, torch::Tensor centers,
                         int64_t degree) {
    check_sh(means, sh0, shN, centers, degree);
    const int64_t N = means.size(0), C = centers.size(0), M = shN.size(1);
    auto out = torch::empty({C, N, 3}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sh_forward", [&] {
        sh_forward_impl<scalar_t>(means.data_ptr<scalar_t>(), sh0.data_ptr<scalar_t>(), shN.data_ptr<scalar_t>(),
                                  centers.data_ptr<scalar_t>(), C, N, M, static_cast<int>(degree),
                                  out.data_ptr<scalar_t>());
    });
    return out;
}

// returns grad means [N, 3], sh0 [N, 1, 3], shN [N, M, 3] (zero beyond the degree's coefficients)
std::vector<torch::Tensor> sh_backward(torch::Tensor means, torch::Tensor sh0, torch::Tensor shN,
                                       torch::Tensor centers, int64_t degree, torch::Tensor g_colors) {
    check_sh(means, sh0, shN, centers, degree);
    const int64_t N = means.size(0), C = centers.size(0), M = shN.size(1);
    TORCH_CHECK(g_colors.sizes() == torch::IntArrayRef({C, N, 3}) && g_colors.is_contiguous() &&
                g_colors.scalar_type() == means.scalar_type(), "sh_colors_cpu: bad colour gradient");
    auto g_means = torch::zeros_like(means), g_sh0 = torch::zeros_like(sh0), g_shN = torch::zeros_like(shN);
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sh_backward", [&] {
        sh_backward_impl<scalar_t>(means.data_ptr<scalar_t>(), sh0.data_ptr<scalar_t>(), shN.data_ptr<scalar_t>(),
                                   centers.data_ptr<scalar_t>(), C, N, M, static_cast<int>(degree),
                                   g_colors.data_ptr<scalar_t>(), g_means.data_ptr<scalar_t>(),
                                   g_sh0.data_ptr<scalar_t>(), g_shN.data_ptr<scalar_t>());
    });
    return {g_means, g_sh0, g_shN};
}

}  // namespace dff_raster
