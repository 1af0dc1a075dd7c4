// EWA projection of 3D Gaussians to pixel-space 2D Gaussians on the CPU (OpenMP), forward and backward, with the
// conventions of its twin dff_gs/render/projection.py (gsplat's classic mode): quaternions normalised, the
// Jacobian evaluated at the mean clamped to 1.3x the field of view, eps2d added to the 2D covariance's diagonal,
// radius ceil(3.33 sigma) per axis, and Gaussians nearer than near_plane, farther than far_plane or wholly
// outside the image culled (radius 0). The backward pass runs per Gaussian over the cameras: deterministic.
#include "cpu.h"

#include <algorithm>
#include <cmath>

namespace dff_raster {

namespace {

template <typename T>
struct Mat3 {
    T m[3][3];
};

// Everything the forward computes for one (camera, Gaussian), kept for the backward pass.
template <typename T>
struct Proj {
    T qn[4], qnorm;           // normalised quaternion and |q|
    T Rq[3][3], M[3][3];      // rotation, rotation * diag(scale)
    T Sc[3][3];               // camera-space covariance
    T x, y, z, zs;            // camera-space mean, z kept away from 0
    T u, v, uc, vc;           // x / zs, y / zs and their clamped values
    bool u_in, v_in;          // not clamped
    T tx, ty, J[2][3];
    T a, b, c, det;
    bool ok;
};

template <typename T>
inline void project_one(const T* mean, const T* quat, const T* scale, const T* V, const T* K, int64_t W, int64_t H,
                        T eps2d, Proj<T>& p) {
    const T qn2 = quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3];
    p.qnorm = std::sqrt(qn2);
    const T inv = T(1) / std::max(p.qnorm, T(1e-12));
    for (int i = 0; i < 4; ++i) p.qn[i] = quat[i] * inv;
    const T w = p.qn[0], x = p.qn[1], y = p.qn[2], z = p.qn[3];
    const T R[3][3] = {{1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)},
                       {2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)},
                       {2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)}};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            p.Rq[i][j] = R[i][j];
            p.M[i][j] = R[i][j] * scale[j];
        }
    T Sw[3][3];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) Sw[i][j] = p.M[i][0] * p.M[j][0] + p.M[i][1] * p.M[j][1] + p.M[i][2] * p.M[j][2];
    T RS[3][3];  // Rv Sw
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) RS[i][j] = V[4 * i] * Sw[0][j] + V[4 * i + 1] * Sw[1][j] + V[4 * i + 2] * Sw[2][j];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) p.Sc[i][j] = RS[i][0] * V[4 * j] + RS[i][1] * V[4 * j + 1] + RS[i][2] * V[4 * j + 2];
    p.x = V[0] * mean[0] + V[1] * mean[1] + V[2] * mean[2] + V[3];
    p.y = V[4] * mean[0] + V[5] * mean[1] + V[6] * mean[2] + V[7];
    p.z = V[8] * mean[0] + V[9] * mean[1] + V[10] * mean[2] + V[11];
    p.zs = std::abs(p.z) < T(1e-6) ? T(1e-6) : p.z;
    const T fx = K[0], cx = K[2], fy = K[4], cy = K[5];
    const T tan_x = T(0.5) * W / fx, tan_y = T(0.5) * H / fy;
    const T lim_xp = (W - cx) / fx + T(0.3) * tan_x, lim_xn = cx / fx + T(0.3) * tan_x;
    const T lim_yp = (H - cy) / fy + T(0.3) * tan_y, lim_yn = cy / fy + T(0.3) * tan_y;
    p.u = p.x / p.zs;
    p.v = p.y / p.zs;
    p.uc = std::min(std::max(p.u, -lim_xn), lim_xp);
    p.vc = std::min(std::max(p.v, -lim_yn), lim_yp);
    p.u_in = p.u > -lim_xn && p.u < lim_xp;
    p.v_in = p.v > -lim_yn && p.v < lim_yp;
    p.tx = p.zs * p.uc;
    p.ty = p.zs * p.vc;
    const T z2 = p.zs * p.zs;
    p.J[0][0] = fx / p.zs; p.J[0][1] = 0; p.J[0][2] = -fx * p.tx / z2;
    p.J[1][0] = 0; p.J[1][1] = fy / p.zs; p.J[1][2] = -fy * p.ty / z2;
    T JS[2][3];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) JS[i][j] = p.J[i][0] * p.Sc[0][j] + p.J[i][1] * p.Sc[1][j] + p.J[i][2] * p.Sc[2][j];
    const T c00 = JS[0][0] * p.J[0][0] + JS[0][1] * p.J[0][1] + JS[0][2] * p.J[0][2];
    const T c01 = JS[0][0] * p.J[1][0] + JS[0][1] * p.J[1][1] + JS[0][2] * p.J[1][2];
    const T c11 = JS[1][0] * p.J[1][0] + JS[1][1] * p.J[1][1] + JS[1][2] * p.J[1][2];
    p.a = c00 + eps2d;
    p.b = c01;
    p.c = c11 + eps2d;
    p.det = p.a * p.c - p.b * p.b;
    p.ok = p.det > 0;
}

}  // namespace

template <typename T>
static void project_forward_impl(const T* means, const T* quats, const T* scales, const T* viewmats, const T* Ks,
                                 int64_t C, int64_t N, int64_t W, int64_t H, T near_plane, T far_plane, T eps2d,
                                 T* means2d, T* conics, T* depths, int32_t* radii) {
#pragma omp parallel for num_threads(num_threads()) schedule(static) collapse(2)
    for (int64_t cam = 0; cam < C; ++cam)
        for (int64_t n = 0; n < N; ++n) {
            Proj<T> p;
            const T* K = Ks + 9 * cam;
            project_one(means + 3 * n, quats + 4 * n, scales + 3 * n, viewmats + 16 * cam, K, W, H, eps2d, p);
            const int64_t i = cam * N + n;
            const T ds = p.ok ? p.det : T(1);
            conics[3 * i] = p.c / ds;
            conics[3 * i + 1] = -p.b / ds;
            conics[3 * i + 2] = p.a / ds;
            const T mx = K[0] * p.x / p.zs + K[2], my = K[4] * p.y / p.zs + K[5];
            means2d[2 * i] = mx;
            means2d[2 * i + 1] = my;
            depths[i] = p.z;
            const T rx = std::ceil(T(3.33) * std::sqrt(std::max(p.a, T(0))));
            const T ry = std::ceil(T(3.33) * std::sqrt(std::max(p.c, T(0))));
            const bool inside = (mx + rx > 0) && (mx - rx < W) && (my + ry > 0) && (my - ry < H);
            const bool valid = p.ok && p.z > near_plane && p.z < far_plane && inside && std::isfinite(mx) &&
                               std::isfinite(my);
            const T cap = T(1 << 30);
            radii[2 * i] = valid ? static_cast<int32_t>(std::min(rx, cap)) : 0;
            radii[2 * i + 1] = valid ? static_cast<int32_t>(std::min(ry, cap)) : 0;
        }
}

template <typename T>
static void project_backward_impl(const T* means, const T* quats, const T* scales, const T* viewmats, const T* Ks,
                                  int64_t C, int64_t N, int64_t W, int64_t H, T eps2d, const T* g_means2d,
                                  const T* g_conics, const T* g_depths, T* g_means, T* g_quats, T* g_scales) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        T gm[3] = {0, 0, 0}, gq[4] = {0, 0, 0, 0}, gs[3] = {0, 0, 0};
        for (int64_t cam = 0; cam < C; ++cam) {
            const int64_t i = cam * N + n;
            const T* V = viewmats + 16 * cam;
            const T* K = Ks + 9 * cam;
            Proj<T> p;
            project_one(means + 3 * n, quats + 4 * n, scales + 3 * n, V, K, W, H, eps2d, p);
            const T fx = K[0], fy = K[4];
            // conics -> a, b, c
            const T gc0 = g_conics[3 * i], gc1 = g_conics[3 * i + 1], gc2 = g_conics[3 * i + 2];
            T ga, gb, gcc;
            if (p.ok) {
                const T inv = T(1) / p.det;
                const T gdet = -(gc0 * p.c - gc1 * p.b + gc2 * p.a) * inv * inv;
                ga = gc2 * inv + gdet * p.c;
                gcc = gc0 * inv + gdet * p.a;
                gb = -gc1 * inv - T(2) * gdet * p.b;
            } else {
                ga = gc2; gcc = gc0; gb = -gc1;
            }
            // cov2d = J Sc J^T with the symmetric gradient Gs = [[ga, gb / 2], [gb / 2, gcc]]
            const T Gs[2][2] = {{ga, T(0.5) * gb}, {T(0.5) * gb, gcc}};
            T GJ[2][3];  // Gs J
            for (int r = 0; r < 2; ++r)
                for (int j = 0; j < 3; ++j) GJ[r][j] = Gs[r][0] * p.J[0][j] + Gs[r][1] * p.J[1][j];
            T gSc[3][3];  // J^T Gs J
            for (int r = 0; r < 3; ++r)
                for (int j = 0; j < 3; ++j) gSc[r][j] = p.J[0][r] * GJ[0][j] + p.J[1][r] * GJ[1][j];
            T gJ[2][3];  // 2 Gs J Sc
            for (int r = 0; r < 2; ++r)
                for (int j = 0; j < 3; ++j)
                    gJ[r][j] = T(2) * (GJ[r][0] * p.Sc[0][j] + GJ[r][1] * p.Sc[1][j] + GJ[r][2] * p.Sc[2][j]);
            // camera-space mean
            T gx = 0, gy = 0, gz = g_depths[i], gzs = 0;
            const T z2 = p.zs * p.zs, z3 = z2 * p.zs;
            gzs += gJ[0][0] * (-fx / z2) + gJ[0][2] * (T(2) * fx * p.tx / z3) + gJ[1][1] * (-fy / z2) +
                   gJ[1][2] * (T(2) * fy * p.ty / z3);
            const T gtx = gJ[0][2] * (-fx / z2), gty = gJ[1][2] * (-fy / z2);
            gzs += gtx * p.uc + gty * p.vc;  // t = zs * clamp(x / zs)
            if (p.u_in) { const T gu = gtx * p.zs; gx += gu / p.zs; gzs -= gu * p.x / z2; }
            if (p.v_in) { const T gv = gty * p.zs; gy += gv / p.zs; gzs -= gv * p.y / z2; }
            const T gmx = g_means2d[2 * i], gmy = g_means2d[2 * i + 1];
            gx += gmx * fx / p.zs;
            gy += gmy * fy / p.zs;
            gzs -= (gmx * fx * p.x + gmy * fy * p.y) / z2;
            if (!(std::abs(p.z) < T(1e-6))) gz += gzs;
            for (int j = 0; j < 3; ++j) gm[j] += V[j] * gx + V[4 + j] * gy + V[8 + j] * gz;
            // Sc = Rv Sw Rv^T -> gSw = Rv^T gSc Rv; Sw = M M^T -> gM = 2 gSw M (gSw symmetric)
            T tmp[3][3], gSw[3][3];
            for (int r = 0; r < 3; ++r)
                for (int j = 0; j < 3; ++j)
                    tmp[r][j] = V[r] * gSc[0][j] + V[4 + r] * gSc[1][j] + V[8 + r] * gSc[2][j];
            for (int r = 0; r < 3; ++r)
                for (int j = 0; j < 3; ++j) gSw[r][j] = tmp[r][0] * V[j] + tmp[r][1] * V[4 + j] + tmp[r][2] * V[8 + j];
            T gR[3][3];
            for (int r = 0; r < 3; ++r)
                for (int j = 0; j < 3; ++j) {
                    const T gMrj = T(2) * (gSw[r][0] * p.M[0][j] + gSw[r][1] * p.M[1][j] + gSw[r][2] * p.M[2][j]);
                    gs[j] += gMrj * p.Rq[r][j];
                    gR[r][j] = gMrj * scales[3 * n + j];
                }
            const T w = p.qn[0], x = p.qn[1], y = p.qn[2], z = p.qn[3];
            const T gqn[4] = {
                T(2) * (-z * gR[0][1] + y * gR[0][2] + z * gR[1][0] - x * gR[1][2] - y * gR[2][0] + x * gR[2][1]),
                T(2) * (y * gR[0][1] + z * gR[0][2] + y * gR[1][0] - T(2) * x * gR[1][1] - w * gR[1][2] +
                        z * gR[2][0] + w * gR[2][1] - T(2) * x * gR[2][2]),
                T(2) * (-T(2) * y * gR[0][0] + x * gR[0][1] + w * gR[0][2] + x * gR[1][0] + z * gR[1][2] -
                        w * gR[2][0] + z * gR[2][1] - T(2) * y * gR[2][2]),
                T(2) * (-T(2) * z * gR[0][0] - w * gR[0][1] + x * gR[0][2] + w * gR[1][0] - T(2) * z * gR[1][1] +
                        y * gR[1][2] + x * gR[2][0] + y * gR[2][1])};
            if (p.qnorm > T(1e-12)) {
                const T dot = gqn[0] * w + gqn[1] * x + gqn[2] * y + gqn[3] * z;
                for (int j = 0; j < 4; ++j) gq[j] += (gqn[j] - p.qn[j] * dot) / p.qnorm;
            } else {
                for (int j = 0; j < 4; ++j) gq[j] += gqn[j] / T(1e-12);
            }
        }
        for (int j = 0; j < 3; ++j) { g_means[3 * n + j] = gm[j]; g_scales[3 * n + j] = gs[j]; }
        for (int j = 0; j < 4; ++j) g_quats[4 * n + j] = gq[j];
    }
}

static void check_projection(const torch::Tensor& means, const torch::Tensor& quats, const torch::Tensor& scales,
                             const torch::Tensor& viewmats, const torch::Tensor& Ks) {
    TORCH_CHECK(means.device().is_cpu(), "project_cpu: tensors must be on the CPU");
    const int64_t N = means.size(0), C = viewmats.size(0);
    TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "project_cpu: means must be [N, 3]");
    TORCH_CHECK(quats.sizes() == torch::IntArrayRef({N, 4}), "project_cpu: quats must be [N, 4]");
    TORCH_CHECK(scales.sizes() == torch::IntArrayRef({N, 3}), "project_cpu: scales must be [N, 3]");
    TORCH_CHECK(viewmats.sizes() == torch::IntArrayRef({C, 4, 4}), "project_cpu: viewmats must be [C, 4, 4]");
    TORCH_CHECK(Ks.sizes() == torch::IntArrayRef({C, 3, 3}), "project_cpu: Ks must be [C, 3, 3]");
    for (const auto* t : {&means, &quats, &scales, &viewmats, &Ks})
        TORCH_CHECK(t->scalar_type() == means.scalar_type() && t->is_contiguous(),
                    "project_cpu: inputs must be contiguous and of one floating dtype");
}

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor viewmats, torch::Tensor Ks, int64_t width, int64_t height,
                                           double near_plane, double far_plane, double eps2d) {
    check_projection(means, quats, scales, viewmats, Ks);
    const int64_t N = means.size(0), C = viewmats.size(0);
    auto means2d = torch::empty({C, N, 2}, means.options());
    auto conics = torch::empty({C, N, 3}, means.options());
    auto depths = torch::empty({C, N}, means.options());
    auto radii = torch::empty({C, N, 2}, means.options().dtype(torch::kInt32));
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_forward", [&] {
        project_forward_impl<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                       scales.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(),
                                       Ks.data_ptr<scalar_t>(), C, N, width, height,
                                       static_cast<scalar_t>(near_plane), static_cast<scalar_t>(far_plane),
                                       static_cast<scalar_t>(eps2d), means2d.data_ptr<scalar_t>(),
                                       conics.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(),
                                       radii.data_ptr<int32_t>());
    });
    return {means2d, conics, depths, radii};
}

std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor viewmats, torch::Tensor Ks, int64_t width, int64_t height,
                                            double eps2d, torch::Tensor g_means2d, torch::Tensor g_conics,
                                            torch::Tensor g_depths) {
    check_projection(means, quats, scales, viewmats, Ks);
    const int64_t N = means.size(0), C = viewmats.size(0);
    TORCH_CHECK(g_means2d.sizes() == torch::IntArrayRef({C, N, 2}) && g_conics.sizes() == torch::IntArrayRef({C, N, 3})
                && g_depths.sizes() == torch::IntArrayRef({C, N}), "project_cpu: bad output gradients");
    auto gm = torch::empty_like(means), gq = torch::empty_like(quats), gs = torch::empty_like(scales);
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
        project_backward_impl<scalar_t>(
            means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), C, N, width, height, static_cast<scalar_t>(eps2d),
            g_means2d.contiguous().data_ptr<scalar_t>(), g_conics.contiguous().data_ptr<scalar_t>(),
            g_depths.contiguous().data_ptr<scalar_t>(), gm.data_ptr<scalar_t>(), gq.data_ptr<scalar_t>(),
            gs.data_ptr<scalar_t>());
    });
    return {gm, gq, gs};
}

}  // namespace dff_raster
