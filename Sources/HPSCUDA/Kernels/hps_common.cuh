// Shared definitions of the HPS CUDA kernels. Compiled by NVRTC at run time (see NVRTC.swift); no CUDA
// headers: the few types the kernels need are declared here.
//
// Conventions:
//  - Every kernel is `extern "C"` so the host finds it by name, and exists in three vector widths
//    (suffix _v4, _v2, _v1: float4 / float2 / float moves) chosen by the host from the row width.
//  - Loops are grid-stride over whole warps (`base` is uniform across a warp), so warp intrinsics always
//    run converged with the full mask.
//  - Counts that only the device knows (unique keys, misses) are passed as pointers (`countPtr`); when a
//    pointer is null the host-given count is used.
#pragma once

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef int i32;
typedef unsigned char u8;

#define HPS_FULL_MASK 0xffffffffu
#define HPS_WARPS_PER_BLOCK 8
#define HPS_BLOCK (HPS_WARPS_PER_BLOCK * 32)

// The partition mixer of HPS (`rrxmrrxmsx_0`), identical to `hpsKeyMix` in Swift: the GPU dynamic cache
// places keys in the same sets as the CPU cache.
__device__ __forceinline__ u64 hps_key_mix(u64 x) {
    x ^= ((x >> 25) | (x << 39)) ^ ((x >> 50) | (x << 14));
    x *= 0xA24BAED4963EE407ull;
    x ^= ((x >> 24) | (x << 40)) ^ ((x >> 49) | (x << 15));
    x *= 0x9FB21C651E98DF25ull;
    return x ^ (x >> 28);
}

__device__ __forceinline__ u32 hps_lane() { return threadIdx.x & 31u; }

// First index of the grid-stride loop over warps, and its stride, in keys (32 per warp).
__device__ __forceinline__ u64 hps_warp_base() { return ((u64)blockIdx.x * blockDim.x + threadIdx.x) & ~31ull; }
__device__ __forceinline__ u64 hps_grid_stride() { return (u64)gridDim.x * blockDim.x; }

__device__ __forceinline__ u32 hps_count(u32 n, const u32 *countPtr) { return countPtr ? min(n, *countPtr) : n; }

// Warp-aggregated append: lanes with `take` get consecutive positions from `*counter`. Call converged.
__device__ __forceinline__ u32 hps_warp_append(bool take, u32 *counter) {
    const u32 lane = hps_lane();
    const u32 mask = __ballot_sync(HPS_FULL_MASK, take);
    if (mask == 0) return 0;
    const u32 leader = __ffs(mask) - 1;
    u32 base = 0;
    if (lane == leader) base = atomicAdd(counter, (u32)__popc(mask));
    base = __shfl_sync(HPS_FULL_MASK, base, leader);
    return base + __popc(mask & ((1u << lane) - 1u));
}

// ---- Row moves --------------------------------------------------------------------------------------------

template <int W> struct HpsVec;
template <> struct HpsVec<4> { typedef float4 T; };
template <> struct HpsVec<2> { typedef float2 T; };
template <> struct HpsVec<1> { typedef float T; };

template <int W> __device__ __forceinline__ typename HpsVec<W>::T hps_splat(float v);
template <> __device__ __forceinline__ float4 hps_splat<4>(float v) { return make_float4(v, v, v, v); }
template <> __device__ __forceinline__ float2 hps_splat<2>(float v) { return make_float2(v, v); }
template <> __device__ __forceinline__ float hps_splat<1>(float v) { return v; }

template <int W> __device__ __forceinline__ typename HpsVec<W>::T hps_load(const float *p) {
    return *reinterpret_cast<const typename HpsVec<W>::T *>(p);
}
template <int W> __device__ __forceinline__ void hps_store(float *p, typename HpsVec<W>::T v, bool streaming) {
    typedef typename HpsVec<W>::T V;
    if (streaming) __stcs(reinterpret_cast<V *>(p), v);
    else *reinterpret_cast<V *>(p) = v;
}

// What a lane hands to `hps_warp_move_rows`: one row to write (or none).
struct HpsRowMove {
    const float *src;  // null: write `fill`
    float *dst;        // null: nothing to write
};

// Per-warp staging of the 32 rows a warp moves at once (shared memory).
struct HpsWarpRows {
    const float *src[32];
    float *dst[32];
};

#define HPS_MOVE_UNROLL 4

// The warp writes up to 32 rows, one per lane's `move`: `units` vectors of W floats each. Lanes split a row
// into L = 2^log2L vectors (L = min(32, next power of two ≥ units)); R = 32 / L rows move per pass, and
// HPS_MOVE_UNROLL passes load before they store, so several rows are in flight per warp. Call converged.
template <int W>
__device__ __forceinline__ void hps_warp_move_rows(HpsWarpRows &rows, HpsRowMove move, float fill, u32 units, u32 log2L,
                                                   bool streaming) {
    typedef typename HpsVec<W>::T V;
    const u32 lane = hps_lane();
    rows.src[lane] = move.src;
    rows.dst[lane] = move.dst;
    __syncwarp();
    const u32 L = 1u << log2L;
    const u32 R = 32u >> log2L;
    const u32 r = lane >> log2L;
    const u32 u0 = lane & (L - 1u);
    const V fillv = hps_splat<W>(fill);
    for (u32 ubase = 0; ubase < units; ubase += L) {
        const u32 u = ubase + u0;
        const bool uok = u < units;
        for (u32 j0 = 0; j0 < 32u; j0 += R * HPS_MOVE_UNROLL) {
            V v[HPS_MOVE_UNROLL];
            float *d[HPS_MOVE_UNROLL];
#pragma unroll
            for (int k = 0; k < HPS_MOVE_UNROLL; ++k) {
                const u32 j = j0 + (u32)k * R + r;
                d[k] = nullptr;
                v[k] = fillv;
                if (uok && j < 32u) {
                    float *dst = rows.dst[j];
                    if (dst) {
                        d[k] = dst + (u64)u * W;
                        const float *src = rows.src[j];
                        if (src) v[k] = hps_load<W>(src + (u64)u * W);
                    }
                }
            }
#pragma unroll
            for (int k = 0; k < HPS_MOVE_UNROLL; ++k) {
                if (d[k]) hps_store<W>(d[k], v[k], streaming);
            }
        }
    }
    __syncwarp();
}

// The whole warp copies one row of `units` vectors (used where rows are written one at a time).
template <int W>
__device__ __forceinline__ void hps_warp_copy_row(float *dst, const float *src, u32 units) {
    for (u32 u = hps_lane(); u < units; u += 32u) {
        hps_store<W>(dst + (u64)u * W, hps_load<W>(src + (u64)u * W), false);
    }
}

// Instantiates `name` for the three vector widths as extern "C" kernels name_v4, name_v2, name_v1.
#define HPS_INSTANTIATE(name, params, args)                                                                     \
    extern "C" __global__ void __launch_bounds__(HPS_BLOCK) name##_v4 params { name##_impl<4> args; }              \
    extern "C" __global__ void __launch_bounds__(HPS_BLOCK) name##_v2 params { name##_impl<2> args; }              \
    extern "C" __global__ void __launch_bounds__(HPS_BLOCK) name##_v1 params { name##_impl<1> args; }
