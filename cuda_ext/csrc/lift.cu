// Feature lifting in one pass over the rasterizer's tiles, without materialising any image.
//
// One block per (camera, tile), one thread per pixel, as gsplat's rasterize_to_pixels forward: Gaussians of
// the tile are read front to back in rounds of kBatch into shared memory, each pixel composites them with
// gsplat's rules (alpha = min(0.999, o exp(-sigma)), skip alpha < 1/255 or sigma < 0, stop before the
// Gaussian that brings T to <= 1e-4) and writes its weight w = alpha T (times its pixel weight) into a
// [kBatch, P] table in shared memory. The block then computes, for every Gaussian g of the round and channel
// c, sum_p w[g, p] F(p, c): a small dense product in which each thread owns one channel (its features read
// once per round, coalesced across the warp) and keeps kBatch accumulators in registers; one atomicAdd per
// (Gaussian, channel, tile) lands the result in feat_sum [N, C]. With top_k, a first pass over the tile finds
// each pixel's k-th largest weight, and the second pass keeps only weights above it.
//
// The PyTorch twin (same inputs, same outputs) is cuda_ext/reference.py::lift_accumulate_reference.

// ATen/cuda/CUDAContext.h is avoided on purpose: it pulls in cuSPARSE/cuBLAS headers that minimal toolkits lack.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "lift.h"

namespace dff_lift {

namespace {

constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kAlphaMax = 0.999f;
constexpr float kTMin = 1e-4f;

template <typename T>
__device__ __forceinline__ float to_float(T v) {
    return static_cast<float>(v);
}

// One front-to-back compositing step of a pixel. Returns true when the Gaussian contributes, with its weight
// in vis (T is updated); sets done when the pixel stops (the Gaussian that would bring T to <= 1e-4 and all
// after it are excluded, as in gsplat).
__device__ __forceinline__ bool composite_step(const float* xyo, const float* con, float px, float py, float& T,
                                               bool& done, float& vis) {
    // Explicitly rounded operations (no FMA contraction): the top-k passes recompute the same weights and
    // compare them for equality, and the PyTorch twin evaluates the same expression in the same order.
    const float dx = __fsub_rn(xyo[0], px);
    const float dy = __fsub_rn(xyo[1], py);
    const float quad = __fadd_rn(__fmul_rn(__fmul_rn(con[0], dx), dx), __fmul_rn(__fmul_rn(con[2], dy), dy));
    const float sigma = __fadd_rn(__fmul_rn(0.5f, quad), __fmul_rn(__fmul_rn(con[1], dx), dy));
    const float alpha = fminf(kAlphaMax, __fmul_rn(xyo[2], expf(-sigma)));
    if (sigma < 0.f || alpha < kAlphaMin) {
        return false;
    }
    const float next_T = __fmul_rn(T, __fsub_rn(1.f, alpha));
    if (next_T <= kTMin) {
        done = true;
        return false;
    }
    vis = __fmul_rn(alpha, T);
    T = next_T;
    return true;
}

// Load round b of the tile's depth-sorted list into shared memory (threads 0..n-1, one Gaussian each).
__device__ __forceinline__ void load_round(int tr, int start, int n, const int32_t* __restrict__ flatten_ids,
                                           const float* __restrict__ means2d, const float* __restrict__ conics,
                                           const float* __restrict__ opacities, bool opac_per_image, int64_t N,
                                           int32_t* s_ids, float* s_xyo, float* s_con) {
    if (tr < n) {
        const int32_t g = flatten_ids[start + tr];  // camera * N + gaussian
        s_ids[tr] = g;
        s_xyo[3 * tr + 0] = means2d[2 * (int64_t)g + 0];
        s_xyo[3 * tr + 1] = means2d[2 * (int64_t)g + 1];
        s_xyo[3 * tr + 2] = opac_per_image ? opacities[g] : opacities[g % N];
        s_con[3 * tr + 0] = conics[3 * (int64_t)g + 0];
        s_con[3 * tr + 1] = conics[3 * (int64_t)g + 1];
        s_con[3 * tr + 2] = conics[3 * (int64_t)g + 2];
    }
}

template <typename map_t>
__global__ void lift_accumulate_kernel(
    const int I, const int64_t N, const int C, const int n_isects,
    const float* __restrict__ means2d,    // [I, N, 2]
    const float* __restrict__ conics,     // [I, N, 3]
    const float* __restrict__ opacities,  // [I, N] or [N]
    const bool opac_per_image,
    const map_t* __restrict__ maps,  // [I, mh, mw, C]
    const int mh, const int mw,
    const float* __restrict__ pix_weights,  // [I, H, W] or nullptr
    const int H, const int W, const int tile_size, const int tiles_x, const int tiles_y,
    const int32_t* __restrict__ tile_offsets,  // [I, tiles_y, tiles_x]
    const int32_t* __restrict__ flatten_ids,   // [n_isects]
    const int top_k, const int lanes,
    float* __restrict__ feat_sum,   // [N, C]
    float* __restrict__ weight_sum  // [N]
) {
    const int image = blockIdx.x;
    const int P = blockDim.x * blockDim.y;
    const int tr = threadIdx.y * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * tile_size + threadIdx.y;
    const int j = blockIdx.z * tile_size + threadIdx.x;
    const bool inside = i < H && j < W;
    const float px = (float)j + 0.5f;
    const float py = (float)i + 0.5f;
    const float pw = !inside ? 0.f : (pix_weights != nullptr ? pix_weights[((int64_t)image * H + i) * W + j] : 1.f);

    extern __shared__ float smem[];
    int32_t* s_ids = reinterpret_cast<int32_t*>(smem);       // [kBatch]
    float* s_xyo = smem + kBatch;                             // [kBatch, 3] x, y, opacity
    float* s_con = s_xyo + 3 * kBatch;                        // [kBatch, 3] conic
    float* s_gsum = s_con + 3 * kBatch;                       // [kBatch] weight of each Gaussian in the round
    int32_t* s_off = reinterpret_cast<int32_t*>(s_gsum + kBatch);  // [P, 4] bilinear taps (map pixel index)
    float* s_bw = reinterpret_cast<float*>(s_off + 4 * P);    // [P, 4] bilinear tap weights
    int32_t* s_act = reinterpret_cast<int32_t*>(s_bw + 4 * P);  // [P] pixel has a non-zero weight this round
    float* s_w = reinterpret_cast<float*>(s_act + P);         // [kBatch, P + 1] weights (row padded: no conflicts)
    float* s_part = s_w + kBatch * (P + 1);                   // [kBatch, lanes] when P / lanes > 1

    // Bilinear taps of this pixel's centre in its map, as PyTorch's interpolate(align_corners=False).
    {
        int o[4] = {0, 0, 0, 0};
        float wt[4] = {0.f, 0.f, 0.f, 0.f};
        if (inside) {
            const float sy = fmaxf(((float)mh / (float)H) * ((float)i + 0.5f) - 0.5f, 0.f);
            const float sx = fmaxf(((float)mw / (float)W) * ((float)j + 0.5f) - 0.5f, 0.f);
            const int y0 = min((int)sy, mh - 1);
            const int x0 = min((int)sx, mw - 1);
            const int y1 = y0 + (y0 < mh - 1 ? 1 : 0);
            const int x1 = x0 + (x0 < mw - 1 ? 1 : 0);
            const float ly = sy - (float)y0, lx = sx - (float)x0;
            o[0] = y0 * mw + x0;
            o[1] = y0 * mw + x1;
            o[2] = y1 * mw + x0;
            o[3] = y1 * mw + x1;
            wt[0] = (1.f - ly) * (1.f - lx);
            wt[1] = (1.f - ly) * lx;
            wt[2] = ly * (1.f - lx);
            wt[3] = ly * lx;
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            s_off[4 * tr + q] = o[q];
            s_bw[4 * tr + q] = wt[q];
        }
    }

    const int tile = (image * tiles_y + blockIdx.y) * tiles_x + blockIdx.z;
    const int range_start = tile_offsets[tile];
    const int range_end = (tile == I * tiles_y * tiles_x - 1) ? n_isects : tile_offsets[tile + 1];
    const int n_rounds = (range_end - range_start + kBatch - 1) / kBatch;

    // ---- pass 1 (top_k only): each pixel's k largest weights -> threshold and how many ties to keep
    float thr = 0.f;
    int n_eq = INT_MAX;  // default: keep every contribution (all weights are > 0)
    if (top_k > 0) {
        float topv[kMaxTopK];
        int cnt = 0;
        float T = 1.f;
        bool done = !inside || pw <= 0.f;  // a pixel of weight 0 contributes nothing
        for (int b = 0; b < n_rounds; ++b) {
            if (__syncthreads_count(done) >= P) {
                break;
            }
            const int start = range_start + b * kBatch;
            const int n = min(kBatch, range_end - start);
            load_round(tr, start, n, flatten_ids, means2d, conics, opacities, opac_per_image, N, s_ids, s_xyo, s_con);
            __syncthreads();
            for (int t = 0; t < n && !done; ++t) {
                float vis;
                if (!composite_step(s_xyo + 3 * t, s_con + 3 * t, px, py, T, done, vis)) {
                    continue;
                }
                if (cnt == top_k && vis <= topv[top_k - 1]) {
                    continue;
                }
                int q = cnt < top_k ? cnt++ : top_k - 1;  // insertion into the descending list
                while (q > 0 && topv[q - 1] < vis) {
                    topv[q] = topv[q - 1];
                    --q;
                }
                topv[q] = vis;
            }
        }
        if (cnt == top_k) {
            thr = topv[top_k - 1];
            int n_gt = 0;
            for (int q = 0; q < top_k; ++q) {
                n_gt += topv[q] > thr ? 1 : 0;
            }
            n_eq = top_k - n_gt;
        }
        __syncthreads();  // pass 2 reloads the shared round buffers
    }

    // ---- pass 2: weights of each round, then their features reduced per Gaussian
    const int groups = P / lanes;  // pixel groups reduced in shared memory when > 1
    const int lane = tr % lanes;
    const int group = tr / lanes;
    const int64_t map_base = (int64_t)image * mh * mw;
    float T = 1.f;
    bool done = !inside || pw <= 0.f;  // a pixel of weight 0 contributes nothing
    for (int b = 0; b < n_rounds; ++b) {
        if (__syncthreads_count(done) >= P) {
            break;
        }
        const int start = range_start + b * kBatch;
        const int n = min(kBatch, range_end - start);
        load_round(tr, start, n, flatten_ids, means2d, conics, opacities, opac_per_image, N, s_ids, s_xyo, s_con);
        __syncthreads();

        bool any = false;
        for (int t = 0; t < kBatch; ++t) {
            float wv = 0.f;
            float vis;
            if (t < n && !done && composite_step(s_xyo + 3 * t, s_con + 3 * t, px, py, T, done, vis)) {
                bool keep = vis > thr;
                if (!keep && vis == thr && n_eq > 0) {
                    keep = true;
                    --n_eq;
                }
                wv = keep ? vis * pw : 0.f;
            }
            s_w[t * (P + 1) + tr] = wv;
            any = any || wv != 0.f;
        }
        s_act[tr] = any ? 1 : 0;
        if (!__syncthreads_or(any)) {
            continue;  // nothing of this round reached a weighted pixel
        }

        if (tr < n) {  // weight sum of Gaussian tr over the tile
            float s = 0.f;
            for (int p = 0; p < P; ++p) {
                s += s_w[tr * (P + 1) + p];
            }
            s_gsum[tr] = s;
            if (s != 0.f) {
                atomicAdd(weight_sum + (s_ids[tr] % N), s);
            }
        }
        __syncthreads();

        for (int c0 = 0; c0 < C; c0 += lanes) {
            const int c = c0 + lane;
            float acc[kBatch];
#pragma unroll
            for (int t = 0; t < kBatch; ++t) {
                acc[t] = 0.f;
            }
            if (c < C) {
                for (int p = group; p < P; p += groups) {
                    if (!s_act[p]) {
                        continue;
                    }
                    float f = 0.f;
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        f += s_bw[4 * p + q] * to_float(maps[(map_base + s_off[4 * p + q]) * C + c]);
                    }
#pragma unroll
                    for (int t = 0; t < kBatch; ++t) {
                        acc[t] += s_w[t * (P + 1) + p] * f;
                    }
                }
            }
            if (groups == 1) {
                if (c < C) {
                    for (int t = 0; t < n; ++t) {
                        if (s_gsum[t] != 0.f) {
                            atomicAdd(feat_sum + (int64_t)(s_ids[t] % N) * C + c, acc[t]);
                        }
                    }
                }
            } else {
                for (int k = tr; k < kBatch * lanes; k += P) {
                    s_part[k] = 0.f;
                }
                __syncthreads();
                if (c < C) {
                    for (int t = 0; t < n; ++t) {
                        if (acc[t] != 0.f) {
                            atomicAdd(s_part + t * lanes + lane, acc[t]);
                        }
                    }
                }
                __syncthreads();
                for (int k = tr; k < n * lanes; k += P) {
                    const int t = k / lanes;
                    const int cc = c0 + k % lanes;
                    if (cc < C && s_gsum[t] != 0.f) {
                        atomicAdd(feat_sum + (int64_t)(s_ids[t] % N) * C + cc, s_part[k]);
                    }
                }
                __syncthreads();  // s_part is cleared again for the next channel chunk
            }
        }
    }
}

__global__ void lift_normalize_kernel(const int64_t total, const int C, const float* __restrict__ feat_sum,
                                      const float* __restrict__ weight_sum, const float eps,
                                      float* __restrict__ out) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        const float w = weight_sum[k / C];
        out[k] = w > eps ? feat_sum[k] / w : 0.f;
    }
}

void check_cuda(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Device& device) {
    TORCH_CHECK(t.is_cuda(), "cuda_ext lift: ", name, " must be a CUDA tensor");
    TORCH_CHECK(t.device() == device, "cuda_ext lift: ", name, " is on ", t.device(), ", expected ", device);
    TORCH_CHECK(t.scalar_type() == dtype, "cuda_ext lift: ", name, " must be ", dtype, ", got ", t.scalar_type());
    TORCH_CHECK(t.is_contiguous(), "cuda_ext lift: ", name, " must be contiguous");
}

int next_pow2(int v) {
    int p = 1;
    while (p < v) {
        p <<= 1;
    }
    return p;
}

}  // namespace

void lift_accumulate(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                     const at::Tensor& maps, const c10::optional<at::Tensor>& pix_weights,
                     const at::Tensor& tile_offsets, const at::Tensor& flatten_ids, int64_t width, int64_t height,
                     int64_t tile_size, int64_t top_k, at::Tensor& feat_sum, at::Tensor& weight_sum) {
    const at::Device device = means2d.device();
    check_cuda(means2d, "means2d", at::kFloat, device);
    check_cuda(conics, "conics", at::kFloat, device);
    check_cuda(opacities, "opacities", at::kFloat, device);
    TORCH_CHECK(maps.scalar_type() == at::kFloat || maps.scalar_type() == at::kHalf,
                "cuda_ext lift: maps must be float32 or float16, got ", maps.scalar_type());
    check_cuda(maps, "maps", maps.scalar_type(), device);
    check_cuda(tile_offsets, "tile_offsets", at::kInt, device);
    check_cuda(flatten_ids, "flatten_ids", at::kInt, device);
    check_cuda(feat_sum, "feat_sum", at::kFloat, device);
    check_cuda(weight_sum, "weight_sum", at::kFloat, device);
    TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "cuda_ext lift: means2d must be [I, N, 2], got ",
                means2d.sizes());
    const int64_t I = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(conics.dim() == 3 && conics.size(0) == I && conics.size(1) == N && conics.size(2) == 3,
                "cuda_ext lift: conics must be [I, N, 3] = [", I, ", ", N, ", 3], got ", conics.sizes());
    const bool opac_per_image = opacities.dim() == 2;
    TORCH_CHECK((opacities.dim() == 1 && opacities.size(0) == N) ||
                    (opac_per_image && opacities.size(0) == I && opacities.size(1) == N),
                "cuda_ext lift: opacities must be [N] or [I, N], got ", opacities.sizes());
    TORCH_CHECK(maps.dim() == 4 && maps.size(0) == I && maps.size(1) > 0 && maps.size(2) > 0 && maps.size(3) > 0,
                "cuda_ext lift: maps must be [I, h, w, C] with I = ", I, ", got ", maps.sizes());
    const int64_t C = maps.size(3);
    TORCH_CHECK(tile_size == 8 || tile_size == 16, "cuda_ext lift: tile_size must be 8 or 16, got ", tile_size);
    TORCH_CHECK(width > 0 && height > 0, "cuda_ext lift: width and height must be positive");
    TORCH_CHECK(top_k >= 0 && top_k <= kMaxTopK, "cuda_ext lift: top_k must be 0..", kMaxTopK, ", got ", top_k);
    const int64_t tiles_x = (width + tile_size - 1) / tile_size, tiles_y = (height + tile_size - 1) / tile_size;
    TORCH_CHECK(tile_offsets.dim() == 3 && tile_offsets.size(0) == I && tile_offsets.size(1) == tiles_y &&
                    tile_offsets.size(2) == tiles_x,
                "cuda_ext lift: tile_offsets must be [I, tiles_y, tiles_x] = [", I, ", ", tiles_y, ", ", tiles_x,
                "], got ", tile_offsets.sizes());
    TORCH_CHECK(flatten_ids.dim() == 1, "cuda_ext lift: flatten_ids must be 1-D");
    TORCH_CHECK(feat_sum.dim() == 2 && feat_sum.size(0) == N && feat_sum.size(1) == C,
                "cuda_ext lift: feat_sum must be [N, C] = [", N, ", ", C, "], got ", feat_sum.sizes());
    TORCH_CHECK(weight_sum.dim() == 1 && weight_sum.size(0) == N, "cuda_ext lift: weight_sum must be [N] = [", N,
                "], got ", weight_sum.sizes());
    const float* pw_ptr = nullptr;
    if (pix_weights.has_value()) {
        const at::Tensor& pw = pix_weights.value();
        check_cuda(pw, "pix_weights", at::kFloat, device);
        TORCH_CHECK(pw.dim() == 3 && pw.size(0) == I && pw.size(1) == height && pw.size(2) == width,
                    "cuda_ext lift: pix_weights must be [I, H, W] = [", I, ", ", height, ", ", width, "], got ",
                    pw.sizes());
        pw_ptr = pw.data_ptr<float>();
    }
    TORCH_CHECK(I * N < INT_MAX && flatten_ids.numel() < INT_MAX && I * tiles_x * tiles_y < INT_MAX,
                "cuda_ext lift: too many cameras x Gaussians for int32 ids; lift fewer cameras per call");
    TORCH_CHECK(maps.size(1) * maps.size(2) < INT_MAX, "cuda_ext lift: maps are too large");
    const int n_isects = (int)flatten_ids.numel();
    if (n_isects == 0 || N == 0 || I == 0) {
        return;
    }

    const int P = (int)(tile_size * tile_size);
    const int lanes = std::min(P, std::max(32, next_pow2((int)C)));
    const int groups = P / lanes;
    const size_t smem = sizeof(float) * ((size_t)kBatch * 8 + (size_t)9 * P + (size_t)kBatch * (P + 1) +
                                         (groups > 1 ? (size_t)kBatch * lanes : 0));
    const c10::cuda::CUDAGuard guard(device);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    int optin = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device.index()));
    TORCH_CHECK(smem <= (size_t)optin, "cuda_ext lift: needs ", smem, " bytes of shared memory per block, the device ",
                "allows ", optin);
    const dim3 grid((unsigned)I, (unsigned)tiles_y, (unsigned)tiles_x);
    const dim3 block((unsigned)tile_size, (unsigned)tile_size);

#define DFF_LIFT_LAUNCH(map_t, map_ptr)                                                                           \
    do {                                                                                                          \
        auto kernel = lift_accumulate_kernel<map_t>;                                                              \
        if (smem > 48 * 1024) {                                                                                   \
            C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)); \
        }                                                                                                         \
        kernel<<<grid, block, smem, stream>>>(                                                                    \
            (int)I, N, (int)C, n_isects, means2d.data_ptr<float>(), conics.data_ptr<float>(),                     \
            opacities.data_ptr<float>(), opac_per_image, map_ptr, (int)maps.size(1), (int)maps.size(2), pw_ptr,   \
            (int)height, (int)width, (int)tile_size, (int)tiles_x, (int)tiles_y, tile_offsets.data_ptr<int32_t>(), \
            flatten_ids.data_ptr<int32_t>(), (int)top_k, lanes, feat_sum.data_ptr<float>(),                       \
            weight_sum.data_ptr<float>());                                                                        \
        C10_CUDA_KERNEL_LAUNCH_CHECK();                                                                           \
    } while (0)

    if (maps.scalar_type() == at::kHalf) {
        DFF_LIFT_LAUNCH(at::Half, maps.data_ptr<at::Half>());
    } else {
        DFF_LIFT_LAUNCH(float, maps.data_ptr<float>());
    }
#undef DFF_LIFT_LAUNCH
}

void lift_normalize(const at::Tensor& feat_sum, const at::Tensor& weight_sum, double eps, at::Tensor& out) {
    const at::Device device = feat_sum.device();
    check_cuda(feat_sum, "feat_sum", at::kFloat, device);
    check_cuda(weight_sum, "weight_sum", at::kFloat, device);
    check_cuda(out, "out", at::kFloat, device);
    TORCH_CHECK(feat_sum.dim() == 2, "cuda_ext lift_normalize: feat_sum must be [N, C], got ", feat_sum.sizes());
    TORCH_CHECK(weight_sum.dim() == 1 && weight_sum.size(0) == feat_sum.size(0),
                "cuda_ext lift_normalize: weight_sum must be [N] = [", feat_sum.size(0), "], got ", weight_sum.sizes());
    TORCH_CHECK(out.sizes() == feat_sum.sizes(), "cuda_ext lift_normalize: out must be ", feat_sum.sizes(), ", got ",
                out.sizes());
    const int64_t total = feat_sum.numel();
    if (total == 0) {
        return;
    }
    const c10::cuda::CUDAGuard guard(device);
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535);
    lift_normalize_kernel<<<(unsigned)blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        total, (int)feat_sum.size(1), feat_sum.data_ptr<float>(), weight_sum.data_ptr<float>(), (float)eps,
        out.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace dff_lift
