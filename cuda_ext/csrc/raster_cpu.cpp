// The compiled CPU rasterizer: tile binning and depth sort, front-to-back compositing of any number of channels
// with early termination, and its backward pass, in C++ with OpenMP. Same conventions as the PyTorch reference
// (dff_gs/render/backend_torch.py), which is its twin:
//   pixel centres at +0.5; alpha = min(0.999, opacity * exp(-sigma)); contributions with alpha < 1/255 skipped;
//   a pixel stops before the Gaussian that would bring its transmittance to <= 1e-4;
//   (tile, Gaussian) pairs listed by gsplat's tile bounds, each box shrunk to where alpha can reach 1/255,
//   sorted by depth within a tile (ties: Gaussian index).
// Work is split over (camera, tile) pairs. A tile composites its Gaussians one at a time, each only over the
// pixels of its 1/255 ellipse's bounding box. A forward pass that will be differentiated keeps each contribution's
// pixel, alpha and transmittance; the backward pass walks them back to front (exact: no division by 1 - alpha),
// or composites the tile again to make them when they were not kept. Gradients are summed per thread, tiles
// dealt round-robin, and the per-thread sums added in thread order: deterministic for a given thread count.
#include "cpu.h"

#include <algorithm>
#include <cmath>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <tuple>
#include <vector>

namespace dff_raster {

constexpr double kAlphaMin = 1.0 / 255.0;
constexpr double kAlphaMax = 0.999;
constexpr double kTMin = 1e-4;
constexpr int64_t kMaxTile = 64;  // largest tile side

// channels rounded up to a multiple of 8: colours and their gradients are laid out with this stride, zero-padded,
// so the per-channel loops have no remainder
inline int64_t padded_channels(int64_t D) { return (D + 7) & ~int64_t(7); }

struct Bins {
    std::vector<int64_t> offsets;  // [C * tiles + 1] start of each (camera, tile) list in ids
    std::vector<int32_t> ids;      // Gaussian index (within its camera) of each entry
};

// What every tile a Gaussian lands in needs of it, computed once per (camera, Gaussian) rather than once per tile:
// its log opacity and the half-extents (pixels) of the ellipse outside which its alpha is below 1/255:
// sigma <= log(255 opacity) there, so |dx| <= sqrt(2 log(255 o) Sigma_xx) (Sigma = the conic's inverse), widened
// slightly so rounding cannot drop a pixel the reference keeps.
template <typename scalar_t>
struct Reach {
    std::vector<scalar_t> logop, ex, ey;  // [C * N]
    void resize(int64_t CN) {
        logop.resize(CN);
        ex.resize(CN);
        ey.resize(CN);
    }
    void set(int64_t i, const scalar_t* conics, const scalar_t* opac) {
        const scalar_t a = conics[3 * i], b = conics[3 * i + 1], c = conics[3 * i + 2];
        logop[i] = std::log(std::max(opac[i], static_cast<scalar_t>(1e-30)));
        const double L = static_cast<double>(logop[i]) - std::log(kAlphaMin);  // sigma bound
        const double det = static_cast<double>(a) * c - static_cast<double>(b) * b;
        if (L < -1e-6) {
            ex[i] = ey[i] = -1;  // never reaches 1/255
        } else if (!(det > 0) || !(a > 0) || !(c > 0)) {
            ex[i] = ey[i] = std::numeric_limits<scalar_t>::infinity();  // not an ellipse: test every pixel
        } else {
            const double q = 2.0 * (std::max(L, 0.0) + 1e-4) * (1.0 + 1e-5);
            ex[i] = static_cast<scalar_t>(std::sqrt(q * c / det) + 1e-3);
            ey[i] = static_cast<scalar_t>(std::sqrt(q * a / det) + 1e-3);
        }
    }
    // every (camera, Gaussian)
    void set_all(const scalar_t* conics, const scalar_t* opac, int64_t CN) {
        resize(CN);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
        for (int64_t i = 0; i < CN; ++i) set(i, conics, opac);
    }
};

// Sort Gaussian indices (ascending on entry) by depth, NaN as +inf, ties by index.
static void sort_by_depth(const double* depth, int64_t* idx, int64_t n) {
    std::sort(idx, idx + n, [depth](int64_t i, int64_t j) {
        const double di = std::isnan(depth[i]) ? std::numeric_limits<double>::infinity() : depth[i];
        const double dj = std::isnan(depth[j]) ? std::numeric_limits<double>::infinity() : depth[j];
        return di < dj || (di == dj && i < j);
    });
}
// float depths: a stable LSD radix sort (3 passes of 11 bits) of their bits mapped to ordered unsigned integers;
// stable, so ties keep the ascending index order they came in. The same order as the comparison sort above.
static void sort_by_depth(const float* depth, int64_t* idx, int64_t n) {
    std::vector<uint32_t> key(n), key2(n);
    std::vector<int64_t> idx2(n);
    for (int64_t r = 0; r < n; ++r) {
        float d = depth[idx[r]];
        d = std::isnan(d) ? std::numeric_limits<float>::infinity() : (d == 0 ? 0.0f : d);  // -0 ties with +0
        uint32_t u;
        std::memcpy(&u, &d, sizeof(u));
        key[r] = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    uint32_t *ks = key.data(), *kd = key2.data();
    int64_t *vs = idx, *vd = idx2.data();
    for (int shift = 0; shift < 32; shift += 11) {
        int64_t count[2049] = {0};
        for (int64_t r = 0; r < n; ++r) ++count[((ks[r] >> shift) & 2047) + 1];
        for (int b = 0; b < 2048; ++b) count[b + 1] += count[b];
        for (int64_t r = 0; r < n; ++r) {
            const int64_t at = count[(ks[r] >> shift) & 2047]++;
            kd[at] = ks[r];
            vd[at] = vs[r];
        }
        std::swap(ks, kd);
        std::swap(vs, vd);
    }
    if (vs != idx) std::copy(vs, vs + n, idx);
}

// List and depth-sort the (tile, Gaussian) pairs of every camera, as backend_torch.tile_intersections does:
// within a tile by depth, ties by Gaussian index. Sets the reach of every listed Gaussian.
template <typename scalar_t>
static Bins bin_tiles(const scalar_t* means2d, const scalar_t* conics, const int32_t* radii, const scalar_t* depths,
                      const scalar_t* opac, int64_t C, int64_t N, int64_t tw, int64_t th, int64_t tile,
                      Reach<scalar_t>& reach) {
    const int64_t T = tw * th, CN = C * N;
    const int nt = num_threads();
    std::vector<int32_t> x0(CN), x1(CN), y0(CN), y1(CN);
    reach.resize(CN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < CN; ++i) {
        x0[i] = x1[i] = y0[i] = y1[i] = 0;
        if (radii[2 * i] <= 0 || radii[2 * i + 1] <= 0) continue;
        const scalar_t mx = means2d[2 * i], my = means2d[2 * i + 1];
        const scalar_t o = std::max(static_cast<scalar_t>(255.0) * opac[i], static_cast<scalar_t>(1.0));
        const scalar_t ext = std::min(std::sqrt(static_cast<scalar_t>(2.0) * std::log(o)), static_cast<scalar_t>(3.33));
        if (!(ext > 0)) continue;  // can never reach alpha 1/255
        const scalar_t rx = std::ceil(static_cast<scalar_t>(radii[2 * i]) * (ext / static_cast<scalar_t>(3.33)));
        const scalar_t ry = std::ceil(static_cast<scalar_t>(radii[2 * i + 1]) * (ext / static_cast<scalar_t>(3.33)));
        auto clampt = [](scalar_t v, int64_t hi) {
            return static_cast<int32_t>(std::min<scalar_t>(std::max<scalar_t>(v, 0), static_cast<scalar_t>(hi)));
        };
        x0[i] = clampt((mx - rx) / tile, tw);
        x1[i] = clampt(std::ceil((mx + rx) / tile), tw);
        y0[i] = clampt((my - ry) / tile, th);
        y1[i] = clampt(std::ceil((my + ry) / tile), th);
        if (x1[i] <= x0[i] || y1[i] <= y0[i]) x1[i] = x0[i] = y1[i] = y0[i] = 0;
        else reach.set(i, conics, opac);  // listed: its tiles will need it
    }
    // listed Gaussians in (camera, depth, index) order: filling the lists in that order sorts each by depth
    std::vector<int64_t> cam_start(C + 1, 0);
    for (int64_t i = 0; i < CN; ++i) cam_start[i / N + 1] += x1[i] > x0[i];
    std::partial_sum(cam_start.begin(), cam_start.end(), cam_start.begin());
    std::vector<int64_t> order;
    order.reserve(cam_start[C]);
    for (int64_t i = 0; i < CN; ++i)
        if (x1[i] > x0[i]) order.push_back(i);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) sort_by_depth(depths, order.data() + cam_start[c], cam_start[c + 1] - cam_start[c]);
    const int64_t R = static_cast<int64_t>(order.size());
    // each thread fills the lists for a contiguous run of that order: count per (thread, tile), then write
    std::vector<int64_t> counts(static_cast<size_t>(nt) * C * T, 0);
    auto boxes = [&](int64_t i, auto&& visit) {
        const int64_t base = (i / N) * T;
        for (int32_t ty = y0[i]; ty < y1[i]; ++ty)
            for (int32_t tx = x0[i]; tx < x1[i]; ++tx) visit(base + ty * tw + tx);
    };
#pragma omp parallel num_threads(nt)
    {
        const int tid = thread_id();
        const int64_t lo = R * tid / nt, hi = R * (tid + 1) / nt;
        int64_t* cnt = counts.data() + static_cast<size_t>(tid) * C * T;
        for (int64_t r = lo; r < hi; ++r) boxes(order[r], [cnt](int64_t k) { ++cnt[k]; });
    }
    Bins b;
    b.offsets.assign(C * T + 1, 0);
    std::vector<int64_t> start(static_cast<size_t>(nt) * C * T);
    int64_t total = 0;
    for (int64_t k = 0; k < C * T; ++k) {
        b.offsets[k] = total;
        for (int t = 0; t < nt; ++t) {
            start[static_cast<size_t>(t) * C * T + k] = total;
            total += counts[static_cast<size_t>(t) * C * T + k];
        }
    }
    b.offsets[C * T] = total;
    b.ids.resize(total);
#pragma omp parallel num_threads(nt)
    {
        const int tid = thread_id();
        const int64_t lo = R * tid / nt, hi = R * (tid + 1) / nt;
        int64_t* pos = start.data() + static_cast<size_t>(tid) * C * T;
        int32_t* ids = b.ids.data();
        for (int64_t r = lo; r < hi; ++r) {
            const int64_t i = order[r];
            const int32_t g = static_cast<int32_t>(i % N);
            boxes(i, [pos, ids, g](int64_t k) { ids[pos[k]++] = g; });
        }
    }
    return b;
}

// One tile's Gaussians, gathered contiguously as the walk reaches them (a walk stops early once all its pixels are
// done), with their reach; colours are copied with a stride of Dp (padded_channels(D), zero-padded).
template <typename scalar_t>
struct TileData {
    std::vector<scalar_t> x, y, a, b, c, logop, ex, ey;
    std::vector<scalar_t> colbuf;  // [n, Dp]
    const int32_t* ids = nullptr;
    const scalar_t *means2d = nullptr, *conics = nullptr, *colors = nullptr;
    const Reach<scalar_t>* reach = nullptr;
    int64_t o = 0, n = 0, D = 0, Dp = 0, ready = 0;

    void start(const int32_t* ids_, int64_t n_, int64_t o_, const scalar_t* means2d_, const scalar_t* conics_,
               const Reach<scalar_t>* reach_, const scalar_t* colors_, int64_t D_) {
        ids = ids_; n = n_; o = o_; means2d = means2d_; conics = conics_; reach = reach_; colors = colors_; D = D_;
        ready = 0;
        for (auto* v : {&x, &y, &a, &b, &c, &logop, &ex, &ey}) v->resize(n);
        Dp = padded_channels(D);
        colbuf.resize(n * Dp);
    }
    const scalar_t* color(int64_t k) const { return colbuf.data() + k * Dp; }
    // make entries [0, k] available
    inline void need(int64_t k) {
        if (k < ready) return;
        const int64_t end = std::min(n, std::max(k + 1, ready + 64));
        for (int64_t i = ready; i < end; ++i) load(i);
        ready = end;
    }
    void load(int64_t k) {
        const int64_t g = ids[k];
        x[k] = means2d[2 * g]; y[k] = means2d[2 * g + 1];
        a[k] = conics[3 * g]; b[k] = conics[3 * g + 1]; c[k] = conics[3 * g + 2];
        logop[k] = reach->logop[o + g]; ex[k] = reach->ex[o + g]; ey[k] = reach->ey[o + g];
        scalar_t* dst = colbuf.data() + k * Dp;
        const scalar_t* src = colors + g * D;
        int64_t d = 0;
        for (; d + 8 <= D; d += 8)  // fixed-size pieces: inlined moves, not a call to memmove per Gaussian
            for (int j = 0; j < 8; ++j) dst[d + j] = src[d + j];
        for (; d < D; ++d) dst[d] = src[d];
        for (; d < Dp; ++d) dst[d] = 0;
    }
};

// The pixels of a tile: centres (+0.5), image index, and whether they lie inside the image. A tile's pixels are
// held row by row with a row stride rounded up to 8 (local pixel p = ly * stride + lx), so each row is whole
// groups of 8 and never shares one with the next row; the padding pixels lie outside the image.
struct TileGeom {
    int64_t ox = 0, oy = 0, size = 0, stride = 0, P = 0;
    std::vector<int64_t> pix;  // image index (y * W + x), -1 outside the image
    void set(int64_t tx, int64_t ty, int64_t tile, int64_t W, int64_t H) {
        ox = tx * tile; oy = ty * tile; size = tile; stride = (tile + 7) & ~int64_t(7); P = tile * stride;
        pix.resize(P);
        for (int64_t ly = 0; ly < tile; ++ly)
            for (int64_t lx = 0; lx < stride; ++lx) {
                const int64_t xx = ox + lx, yy = oy + ly;
                pix[ly * stride + lx] = (lx < tile && xx < W && yy < H) ? yy * W + xx : -1;
            }
    }
    // local pixel range [lo, hi) whose centres lie within `ext` of `m` along one axis starting at `origin`
    template <typename scalar_t>
    void range(scalar_t m, scalar_t ext, int64_t origin, int64_t& lo, int64_t& hi) const {
        if (!(ext >= 0)) { lo = hi = 0; return; }
        if (std::isinf(ext)) { lo = 0; hi = size; return; }
        const double l = std::ceil(static_cast<double>(m) - ext - origin - 0.5);
        const double h = std::floor(static_cast<double>(m) + ext - origin - 0.5) + 1;
        lo = static_cast<int64_t>(std::min<double>(std::max<double>(l, 0), size));
        hi = static_cast<int64_t>(std::min<double>(std::max<double>(h, 0), size));
    }
};

// One contribution kept for the backward pass: pixel, alpha, transmittance before the Gaussian.
template <typename scalar_t>
struct Contribution {
    int32_t p;
    scalar_t alpha, T;
};

// An append-only array in fixed blocks of 2^18 items: it never reallocates, so it holds exactly what was
// appended (plus less than one block) where a std::vector growing by doubling holds up to twice that and, while
// it grows, three times. Blocks are kept by clear() for reuse.
template <typename T>
class Chunked {
  public:
    static constexpr int kShift = 18;
    static constexpr int64_t kMask = (int64_t(1) << kShift) - 1;
    void push_back(const T& v) {
        if ((n_ >> kShift) == static_cast<int64_t>(blocks_.size()))
            blocks_.emplace_back(new T[static_cast<size_t>(1) << kShift]);
        blocks_[n_ >> kShift][n_ & kMask] = v;
        ++n_;
    }
    int64_t size() const { return n_; }
    const T& operator[](int64_t i) const { return blocks_[i >> kShift][i & kMask]; }
    void clear() { n_ = 0; }

  private:
    std::vector<std::unique_ptr<T[]>> blocks_;
    int64_t n_ = 0;
};

// The contributions of every (camera, tile), kept by a forward pass that will be differentiated, so the backward
// pass walks them back to front without compositing again (12 bytes a contribution in float32). Each thread
// appends to its own arrays; a tile records where its part lies.
template <typename scalar_t>
struct ThreadTrace {
    Chunked<Contribution<scalar_t>> items;
    std::vector<int64_t> kstart;  // per walked list entry: where its contributions begin in items (+ one end mark)
};

struct TileRef {
    int thread = 0;
    int64_t k0 = 0, k1 = 0;  // the tile's marks in its thread's kstart: [k0, k1), walked = k1 - k0 - 1
};

struct Trace {
    std::vector<TileRef> tiles;
    std::vector<ThreadTrace<float>> f;
    std::vector<ThreadTrace<double>> d;
    Reach<float> reach_f;  // the forward's reach of every listed Gaussian: the backward walks only those
    Reach<double> reach_d;
    template <typename scalar_t>
    std::vector<ThreadTrace<scalar_t>>& threads();
    template <typename scalar_t>
    Reach<scalar_t>& reach();
};
template <>
inline std::vector<ThreadTrace<float>>& Trace::threads<float>() { return f; }
template <>
inline std::vector<ThreadTrace<double>>& Trace::threads<double>() { return d; }
template <>
inline Reach<float>& Trace::reach<float>() { return reach_f; }
template <>
inline Reach<double>& Trace::reach<double>() { return reach_d; }

// exp() in a form the compiler vectorises: Cody-Waite range reduction and Cephes' degree-6 polynomial (about
// 1 ulp for float, as torch's own vectorised exp); double keeps std::exp.
static inline float vexp(float x) {
    x = std::min(std::max(x, -87.0f), 88.0f);
    // n = round(x / ln 2) by the 1.5 * 2^23 trick (no rounding instruction needed; its low bits hold n)
    const float magic = 12582912.0f;
    const float t = x * 1.44269504088896341f + magic;
    const float n = t - magic;
    int32_t ti, mi;
    std::memcpy(&ti, &t, sizeof(ti));
    std::memcpy(&mi, &magic, sizeof(mi));
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (ti - mi + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}
static inline double vexp(double x) { return std::exp(x); }

// alpha of one Gaussian at the pixel centres (ox + lx + 0.5, py) for lx in [x0, x1), into al[lx]:
// min(0.999, exp(log(opacity) - sigma)) with the exponent floored at -80, and 0 below 1/255 (the reference's formula).
// Evaluated over whole aligned groups of 8 pixels (al must hold kMaxTile entries; the extra ones are not read):
// a loop of a fixed 8 vectorises with no scalar remainder, where [x0, x1) is mostly shorter than 8 and a
// variable-length loop spends its time in the remainder.
template <typename scalar_t>
static inline void row_alphas(const TileData<scalar_t>& g, int64_t k, int64_t ox, int64_t x0, int64_t x1, scalar_t dy,
                              scalar_t* al) {
    const scalar_t x = g.x[k], a = g.a[k], b = g.b[k], c = g.c[k], lo = g.logop[k];
    const scalar_t cdy = static_cast<scalar_t>(0.5) * c * dy * dy, bdy = b * dy, half = static_cast<scalar_t>(0.5);
    const scalar_t amin = static_cast<scalar_t>(kAlphaMin), amax = static_cast<scalar_t>(kAlphaMax);
    for (int64_t x8 = x0 & ~int64_t(7); x8 < x1; x8 += 8) {
        scalar_t* out = al + x8;
#pragma omp simd
        for (int j = 0; j < 8; ++j) {
            const scalar_t dx = static_cast<scalar_t>(static_cast<int32_t>(ox + x8) + j) + half - x;  // int32: packs
            const scalar_t l = lo - (half * a * dx * dx + cdy + bdy * dx);
            scalar_t v = vexp(std::max(l, static_cast<scalar_t>(-80)));
            v = v < amin ? static_cast<scalar_t>(0) : v;
            out[j] = v > amax ? amax : v;
        }
    }
}

// bit j set where both a[j] and t[j] are nonzero (NaN counts as nonzero), j < 8
template <typename scalar_t>
static inline uint32_t live_bits(const scalar_t* a, const scalar_t* t) {
    uint32_t m = 0;
    for (int j = 0; j < 8; ++j) m |= static_cast<uint32_t>((a[j] != 0) & (t[j] != 0)) << j;
    return m;
}
#ifdef __AVX2__
template <>
inline uint32_t live_bits<float>(const float* a, const float* t) {
    const __m256 z = _mm256_setzero_ps();
    const __m256 na = _mm256_cmp_ps(_mm256_loadu_ps(a), z, _CMP_NEQ_UQ);
    const __m256 nt = _mm256_cmp_ps(_mm256_loadu_ps(t), z, _CMP_NEQ_UQ);
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_and_ps(na, nt)));
}
#endif

// The inputs of a compositing pass, and the (camera, tile) lists to walk.
template <typename scalar_t>
struct Pass {
    const Bins& bins;
    const scalar_t *means2d, *conics, *opac, *colors;
    const Reach<scalar_t>& reach;
    int64_t C, N, D, W, H, tile, tw, T;
    Pass(const Bins& b, const scalar_t* m, const scalar_t* c, const scalar_t* o, const scalar_t* col,
         const Reach<scalar_t>& r, int64_t C_, int64_t N_, int64_t D_, int64_t W_, int64_t H_, int64_t tile_)
        : bins(b), means2d(m), conics(c), opac(o), colors(col), reach(r), C(C_), N(N_), D(D_), W(W_), H(H_), tile(tile_),
          tw((W_ + tile_ - 1) / tile_), T(tw * ((H_ + tile_ - 1) / tile_)) {}
    // set up (camera, tile) ct: its pixels and its list's Gaussians; false when the list is empty
    bool open(int64_t ct, TileGeom& geo, TileData<scalar_t>& g) const {
        const int64_t o = (ct / T) * N, t = ct % T;
        const int64_t s = bins.offsets[ct], n = bins.offsets[ct + 1] - s;
        if (n == 0) return false;
        geo.set(t % tw, t / tw, tile, W, H);
        g.start(bins.ids.data() + s, n, o, means2d + 2 * o, conics + 3 * o, &reach, colors + o * D, D);
        return true;
    }
};

// Composite one tile front to back into acc [P, Dp] (when given) and wsum [P] (accumulated alpha). With `trace`,
// every contribution is appended in order, and a mark appended to kstart where each list entry's contributions
// begin (and one at the end). Returns the number of list entries walked (the tile stops once all its pixels are
// done).
template <typename scalar_t>
static int64_t composite_tile(TileData<scalar_t>& g, const TileGeom& geo,
                              std::vector<scalar_t>& Tr, std::vector<scalar_t>& wsum, scalar_t* acc,
                              Chunked<Contribution<scalar_t>>* trace, std::vector<int64_t>* kstart) {
    const int64_t P = geo.P, ts = geo.stride;
    const scalar_t tmin = static_cast<scalar_t>(kTMin);
    scalar_t box[kMaxTile * kMaxTile];  // alphas of a Gaussian's rows, with the tile's row stride
    Tr.assign(P, 1);
    wsum.assign(P, 0);
    int64_t live = 0;
    for (int64_t p = 0; p < P; ++p) {
        if (geo.pix[p] < 0) Tr[p] = 0;  // outside the image: done from the start
        else ++live;
    }
    int64_t k = 0;
    for (; k < g.n && live > 0; ++k) {
        if (trace) kstart->push_back(static_cast<int64_t>(trace->size()));
        g.need(k);
        int64_t x0, x1, y0, y1;
        geo.range(g.x[k], g.ex[k], geo.ox, x0, x1);
        geo.range(g.y[k], g.ey[k], geo.oy, y0, y1);
        if (x0 >= x1 || y0 >= y1) continue;
        const scalar_t* ck = g.color(k);
        // every row's alphas first, then the pixels: the exponentials of all rows overlap in the pipeline instead
        // of waiting behind the pixel loop's branches
        for (int64_t ly = y0; ly < y1; ++ly) {
            const scalar_t dy = static_cast<scalar_t>(geo.oy + ly) + static_cast<scalar_t>(0.5) - g.y[k];
            row_alphas(g, k, geo.ox, x0, x1, dy, box + (ly - y0) * ts);
        }
        for (int64_t ly = y0; ly < y1; ++ly) {
            const scalar_t* row = box + (ly - y0) * ts;
            for (int64_t x8 = x0 & ~int64_t(7); x8 < x1; x8 += 8) {
                // the pixels of this group inside [x0, x1), not done, with a nonzero alpha, as bits
                const int64_t p0 = ly * ts + x8;
                uint32_t m = live_bits(row + x8, Tr.data() + p0);
                m &= (0xffu << std::max<int64_t>(x0 - x8, 0)) & (0xffu >> std::max<int64_t>(x8 + 8 - x1, 0));
                while (m) {
                    const int j = __builtin_ctz(m);
                    m &= m - 1;
                    const int64_t p = p0 + j;
                    const scalar_t T = Tr[p], al = row[x8 + j];
                    const scalar_t nt = T * (1 - al);
                    if (nt <= tmin) { Tr[p] = 0; --live; continue; }  // this Gaussian and every later one excluded
                    const scalar_t w = al * T;
                    if (trace) trace->push_back({static_cast<int32_t>(p), al, T});
                    wsum[p] += w;
                    if (acc) {
                        scalar_t* ap = acc + p * g.Dp;
                        for (int64_t d0 = 0; d0 < g.Dp; d0 += 8) {
#pragma omp simd
                            for (int d = 0; d < 8; ++d) ap[d0 + d] += w * ck[d0 + d];
                        }
                    }
                    Tr[p] = nt;
                }
            }
        }
    }
    if (trace) kstart->push_back(static_cast<int64_t>(trace->size()));
    return k;
}

template <typename scalar_t>
static void forward_impl(const Pass<scalar_t>& ps, scalar_t* out, scalar_t* out_alpha, Trace* trace) {
    const int64_t C = ps.C, D = ps.D, W = ps.W, H = ps.H, T = ps.T;
    const int nt = num_threads();
    if (trace) {
        trace->tiles.assign(C * T, TileRef());
        trace->threads<scalar_t>().resize(nt);
    }
#pragma omp parallel num_threads(nt)
    {
        const int tid = thread_id();
        ThreadTrace<scalar_t>* mine = trace ? &trace->threads<scalar_t>()[tid] : nullptr;
        TileData<scalar_t> g;
        TileGeom geo;
        std::vector<scalar_t> Tr, wsum, acc;
#pragma omp for schedule(dynamic, 1)
        for (int64_t ct = 0; ct < C * T; ++ct) {
            if (!ps.open(ct, geo, g)) continue;
            const int64_t cam = ct / T;
            acc.assign(geo.P * g.Dp, 0);
            const int64_t k0 = mine ? static_cast<int64_t>(mine->kstart.size()) : 0;
            composite_tile<scalar_t>(g, geo, Tr, wsum, acc.data(), mine ? &mine->items : nullptr,
                                     mine ? &mine->kstart : nullptr);
            if (mine) trace->tiles[ct] = {tid, k0, static_cast<int64_t>(mine->kstart.size())};
            for (int64_t p = 0; p < geo.P; ++p) {
                if (geo.pix[p] < 0) continue;
                std::copy(acc.begin() + p * g.Dp, acc.begin() + p * g.Dp + D, out + (cam * H * W + geo.pix[p]) * D);
                out_alpha[cam * H * W + geo.pix[p]] = wsum[p];
            }
        }
    }
}

// Gradients of the tile lists' Gaussians: grad [C * N, 6 + D] = (means2d x y, conic a b c, opacity, colors).
template <typename scalar_t>
static void backward_impl(const Pass<scalar_t>& ps, const scalar_t* g_out, const scalar_t* g_alpha, scalar_t* grad,
                          Trace* kept) {
    const int64_t C = ps.C, N = ps.N, D = ps.D, W = ps.W, H = ps.H, T = ps.T;
    const scalar_t* opac = ps.opac;
    const int64_t K = 6 + D;
    const int nt = num_threads();
    std::vector<scalar_t> partial(static_cast<size_t>(nt > 1 ? nt - 1 : 0) * C * N * K, 0);
    const scalar_t amax = static_cast<scalar_t>(kAlphaMax);
#pragma omp parallel num_threads(nt)
    {
        const int tid = thread_id();
        scalar_t* mine = tid == 0 ? grad : partial.data() + static_cast<size_t>(tid - 1) * C * N * K;
        TileData<scalar_t> g;
        TileGeom geo;
        std::vector<scalar_t> Tr, wsum, S, go, ga, gk(6 + padded_channels(D));
        Chunked<Contribution<scalar_t>> own_items;
        std::vector<int64_t> own_kstart;
#pragma omp for schedule(static, 1)
        for (int64_t ct = 0; ct < C * T; ++ct) {
            if (!ps.open(ct, geo, g)) continue;
            const int64_t cam = ct / T, o = cam * N, s = ps.bins.offsets[ct];
            // the forward's record of this tile, or composite it again to make one
            const Chunked<Contribution<scalar_t>>* trace;
            const int64_t* kstart;
            int64_t walked;
            if (kept) {
                const TileRef& ref = kept->tiles[ct];
                const ThreadTrace<scalar_t>& tt = kept->threads<scalar_t>()[ref.thread];
                trace = &tt.items;
                kstart = tt.kstart.data() + ref.k0;
                walked = ref.k1 - ref.k0 - 1;
                if (walked > 0) g.need(walked - 1);
            } else {
                own_items.clear();
                own_kstart.clear();
                walked = composite_tile<scalar_t>(g, geo, Tr, wsum, nullptr, &own_items, &own_kstart);
                trace = &own_items;
                kstart = own_kstart.data();
            }
            const int64_t P = geo.P;
            const int64_t Dp = g.Dp;
            go.assign(P * Dp, 0);
            ga.assign(P, 0);
            for (int64_t p = 0; p < P; ++p) {
                if (geo.pix[p] < 0) continue;
                const int64_t q = cam * H * W + geo.pix[p];
                std::copy(g_out + q * D, g_out + (q + 1) * D, go.begin() + p * Dp);
                ga[p] = g_alpha[q];
            }
            S.assign(P, 0);  // per pixel: sum over the later Gaussians of dL/dw_j w_j
            for (int64_t k = walked - 1; k >= 0; --k) {
                const int64_t e0 = kstart[k], e1 = kstart[k + 1];
                if (e0 == e1) continue;
                const scalar_t* ck = g.color(k);
                const scalar_t x = g.x[k], y = g.y[k], a = g.a[k], b = g.b[k], c = g.c[k];
                std::fill(gk.begin(), gk.end(), static_cast<scalar_t>(0));
                for (int64_t e = e1 - 1; e >= e0; --e) {
                    const Contribution<scalar_t>& q = (*trace)[e];
                    const int64_t p = q.p;
                    const scalar_t al = q.alpha, w = al * q.T;
                    const scalar_t* gp = go.data() + p * Dp;
                    scalar_t gw = ga[p];
                    scalar_t* gc = gk.data() + 6;
                    for (int64_t d0 = 0; d0 < Dp; d0 += 8) {  // padded to 8: no remainder loop
#pragma omp simd reduction(+ : gw)
                        for (int d = 0; d < 8; ++d) {
                            gw += gp[d0 + d] * ck[d0 + d];
                            gc[d0 + d] += w * gp[d0 + d];
                        }
                    }
                    const scalar_t g_al = gw * q.T - S[p] / (1 - al);
                    S[p] += gw * w;
                    if (al >= amax) continue;  // clamped: no gradient through alpha
                    const scalar_t gl = g_al * al;  // d alpha / d logit = alpha
                    const scalar_t dx = static_cast<scalar_t>(geo.ox + p % geo.stride) + static_cast<scalar_t>(0.5) - x;
                    const scalar_t dy = static_cast<scalar_t>(geo.oy + p / geo.stride) + static_cast<scalar_t>(0.5) - y;
                    gk[0] += gl * (a * dx + b * dy);
                    gk[1] += gl * (b * dx + c * dy);
                    gk[2] -= static_cast<scalar_t>(0.5) * gl * dx * dx;
                    gk[3] -= gl * dx * dy;
                    gk[4] -= static_cast<scalar_t>(0.5) * gl * dy * dy;
                    gk[5] += gl;  // d logit / d log(opacity); divided by the opacity below
                }
                const int64_t gid = ps.bins.ids[s + k];
                const scalar_t op = opac[o + gid];
                gk[5] = op > static_cast<scalar_t>(1e-30) ? gk[5] / op : static_cast<scalar_t>(0);
                scalar_t* dst = mine + (o + gid) * K;
                for (int64_t j = 0; j < K; ++j) dst[j] += gk[j];
            }
        }
    }
    for (int i = 1; i < nt; ++i) {  // thread order: deterministic
        const scalar_t* src = partial.data() + static_cast<size_t>(i - 1) * C * N * K;
        const int64_t total = C * N * K;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t j = 0; j < total; ++j) grad[j] += src[j];
    }
}

static void check_inputs(const torch::Tensor& means2d, const torch::Tensor& conics, const torch::Tensor& opac,
                         const torch::Tensor& colors) {
    TORCH_CHECK(means2d.device().is_cpu(), "rasterize_cpu: tensors must be on the CPU");
    TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "rasterize_cpu: means2d must be [C, N, 2]");
    const int64_t C = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(conics.sizes() == torch::IntArrayRef({C, N, 3}), "rasterize_cpu: conics must be [C, N, 3]");
    TORCH_CHECK(opac.sizes() == torch::IntArrayRef({C, N}), "rasterize_cpu: opacities must be [C, N]");
    TORCH_CHECK(colors.dim() == 3 && colors.size(0) == C && colors.size(1) == N,
                "rasterize_cpu: colors must be [C, N, D]");
    for (const auto* t : {&means2d, &conics, &opac, &colors})
        TORCH_CHECK(t->scalar_type() == means2d.scalar_type() && t->is_contiguous(),
                    "rasterize_cpu: inputs must be contiguous and of one floating dtype");
}

static Bins bins_from(const torch::Tensor& offsets, const torch::Tensor& ids) {
    Bins b;
    b.offsets.assign(offsets.data_ptr<int64_t>(), offsets.data_ptr<int64_t>() + offsets.numel());
    b.ids.assign(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.numel());
    return b;
}

using ForwardResult = std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, std::shared_ptr<Trace>>;

// returns out [C, H, W, D], alpha [C, H, W, 1], tile offsets [C * tiles + 1] int64, Gaussian ids [M] int32, and
// the contributions for the backward pass when `keep_trace` (else None)
ForwardResult rasterize_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opac, torch::Tensor colors,
                                torch::Tensor depths, torch::Tensor radii, int64_t width, int64_t height, int64_t tile,
                                bool keep_trace) {
    check_inputs(means2d, conics, opac, colors);
    TORCH_CHECK(tile > 0 && tile <= kMaxTile && width > 0 && height > 0,
                "rasterize_cpu: width and height must be positive and the tile size 1..", kMaxTile);
    TORCH_CHECK(radii.scalar_type() == torch::kInt32 && radii.is_contiguous() && radii.sizes() == means2d.sizes(),
                "rasterize_cpu: radii must be contiguous int32 [C, N, 2]");
    TORCH_CHECK(depths.scalar_type() == means2d.scalar_type() && depths.is_contiguous() &&
                depths.sizes() == opac.sizes(), "rasterize_cpu: depths must be [C, N] of the inputs' dtype");
    const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
    const int64_t tw = (width + tile - 1) / tile, th = (height + tile - 1) / tile;
    auto out = torch::zeros({C, height, width, D}, colors.options());
    auto alpha = torch::zeros({C, height, width, 1}, colors.options());
    torch::Tensor offsets, ids;
    std::shared_ptr<Trace> trace = keep_trace ? std::make_shared<Trace>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_forward", [&] {
        Reach<scalar_t> own;
        Reach<scalar_t>& reach = trace ? trace->reach<scalar_t>() : own;  // kept with the trace for the backward
        Bins b = bin_tiles<scalar_t>(means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                                     depths.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(), C, N, tw, th, tile, reach);
        const Pass<scalar_t> ps(b, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(),
                                colors.data_ptr<scalar_t>(), reach, C, N, D, width, height, tile);
        forward_impl<scalar_t>(ps, out.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), trace.get());
        offsets = torch::from_blob(b.offsets.data(), {static_cast<int64_t>(b.offsets.size())}, torch::kInt64).clone();
        ids = torch::from_blob(b.ids.data(), {static_cast<int64_t>(b.ids.size())}, torch::kInt32).clone();
    });
    return {out, alpha, offsets, ids, trace};
}

// returns grad means2d [C, N, 2], conics [C, N, 3], opacities [C, N], colors [C, N, D]
std::vector<torch::Tensor> rasterize_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opac,
                                              torch::Tensor colors, torch::Tensor offsets, torch::Tensor ids,
                                              int64_t width, int64_t height, int64_t tile, torch::Tensor g_out,
                                              torch::Tensor g_alpha, std::shared_ptr<Trace> trace) {
    check_inputs(means2d, conics, opac, colors);
    TORCH_CHECK(tile > 0 && tile <= kMaxTile, "rasterize_cpu: the tile size must be 1..", kMaxTile);
    const int64_t C = means2d.size(0), N = means2d.size(1), D = colors.size(2);
    TORCH_CHECK(g_out.sizes() == torch::IntArrayRef({C, height, width, D}) && g_out.is_contiguous() &&
                g_out.scalar_type() == colors.scalar_type(), "rasterize_cpu: bad output gradient");
    TORCH_CHECK(g_alpha.numel() == C * height * width && g_alpha.is_contiguous() &&
                g_alpha.scalar_type() == colors.scalar_type(), "rasterize_cpu: bad alpha gradient");
    auto grad = torch::zeros({C, N, 6 + D}, colors.options());
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_backward", [&] {
        const Bins b = bins_from(offsets, ids);
        Reach<scalar_t> own;  // without the forward's trace: computed here
        if (!trace) own.set_all(conics.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(), C * N);
        const Pass<scalar_t> ps(b, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), opac.data_ptr<scalar_t>(),
                                colors.data_ptr<scalar_t>(), trace ? trace->reach<scalar_t>() : own, C, N, D, width,
                                height, tile);
        backward_impl<scalar_t>(ps, g_out.data_ptr<scalar_t>(), g_alpha.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                trace.get());
    });
    return {grad.narrow(2, 0, 2).contiguous(), grad.narrow(2, 2, 3).contiguous(), grad.select(2, 5).contiguous(),
            grad.narrow(2, 6, D).contiguous()};
}

}  // namespace dff_raster

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    // module_local: a stale prebuilt module and its JIT rebuild can both be loaded in one process
    py::class_<dff_raster::Trace, std::shared_ptr<dff_raster::Trace>>(
        m, "Trace", py::module_local(), "the contributions a differentiated forward pass kept for its backward pass");
    m.doc() = "dff_gs compiled CPU rasterizer (OpenMP); twins: dff_gs/render/projection.py, backend_torch.py";
    // The kernels touch no Python object: other Python threads (a viewer's server, a data loader) run meanwhile.
    using release_gil = py::call_guard<py::gil_scoped_release>;
    m.def("project_forward", &dff_raster::project_forward, release_gil(), py::arg("means"), py::arg("quats"), py::arg("scales"),
          py::arg("viewmats"), py::arg("Ks"), py::arg("width"), py::arg("height"), py::arg("near_plane"),
          py::arg("far_plane"), py::arg("eps2d"), "EWA projection: (means2d, conics, depths, radii)");
    m.def("project_backward", &dff_raster::project_backward, release_gil(), py::arg("means"), py::arg("quats"), py::arg("scales"),
          py::arg("viewmats"), py::arg("Ks"), py::arg("width"), py::arg("height"), py::arg("eps2d"),
          py::arg("grad_means2d"), py::arg("grad_conics"), py::arg("grad_depths"),
          "Gradients (means, quats, scales) of the projection's outputs");
    m.def("sh_forward", &dff_raster::sh_forward, release_gil(), py::arg("means"), py::arg("sh0"), py::arg("shN"),
          py::arg("centers"), py::arg("degree"), "Colours [C,N,3] of SH along mean - centre, + 0.5, clamped at 0");
    m.def("sh_backward", &dff_raster::sh_backward, release_gil(), py::arg("means"), py::arg("sh0"), py::arg("shN"),
          py::arg("centers"), py::arg("degree"), py::arg("grad_colors"), "Gradients (means, sh0, shN) of the colours");
    m.def("rasterize_forward", &dff_raster::rasterize_forward, release_gil(), py::arg("means2d"), py::arg("conics"),
          py::arg("opacities"), py::arg("colors"), py::arg("depths"), py::arg("radii"), py::arg("width"),
          py::arg("height"), py::arg("tile_size"), py::arg("keep_trace"),
          "Composite projected Gaussians: (out [C,H,W,D], alpha [C,H,W,1], tile offsets, Gaussian ids, trace)");
    m.def("rasterize_backward", &dff_raster::rasterize_backward, release_gil(), py::arg("means2d"), py::arg("conics"),
          py::arg("opacities"), py::arg("colors"), py::arg("tile_offsets"), py::arg("gaussian_ids"), py::arg("width"),
          py::arg("height"), py::arg("tile_size"), py::arg("grad_out"), py::arg("grad_alpha"), py::arg("trace").none(true),
          "Gradients (means2d, conics, opacities, colors) of the forward's outputs");
#ifdef DFF_SOURCE_HASH
    m.attr("source_hash") = DFF_SOURCE_HASH;  // set by setup.py: the loader JIT-rebuilds a stale prebuilt module
#else
    m.attr("source_hash") = "";
#endif
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
}
