// Row moves: gather, scatter back to input order, merge fetched rows, default-value fill.
#include "hps_common.cuh"

// For j < count (count = *countPtr when given, else n):
//   source row r = j; r = srcIndex[r] when srcIndex is given; r = srcIndex2[r] when srcIndex2 is given and r ≥ 0;
//   r < 0 or src null → the row is `fill`; r < splitRow → src + r·dim, else srcHigh + (r − splitRow)·dim;
//   destination row d = dstIndex ? dstIndex[j] : j (skipped when d < 0): dst + d·dim.
// Covers: gather (srcIndex = rows), scatter to input order (srcIndex = inverse), scatter straight from cache
// slots (srcIndex = inverse, srcIndex2 = slot of each unique key, −1 = default), merge (dstIndex = missing),
// default fill (src null, dstIndex = missing).
template <int W>
__device__ __forceinline__ void copy_rows_impl(float *dst, const i32 *dstIndex, const float *src, const float *srcHigh,
                                               i64 splitRow, const i32 *srcIndex, const i32 *srcIndex2, u32 n,
                                               const u32 *countPtr, u32 dim, u32 log2L, float fill, u32 streaming) {
    __shared__ HpsWarpRows s_rows[HPS_WARPS_PER_BLOCK];
    HpsWarpRows &rows = s_rows[threadIdx.x >> 5];
    const u32 count = hps_count(n, countPtr);
    const u32 units = dim / W;
    for (u64 base = hps_warp_base(); base < count; base += hps_grid_stride()) {
        const u64 j = base + hps_lane();
        HpsRowMove move = {nullptr, nullptr};
        if (j < count) {
            const i64 d = dstIndex ? (i64)dstIndex[j] : (i64)j;
            if (d >= 0) {
                move.dst = dst + (u64)d * dim;
                i64 r = srcIndex ? (i64)srcIndex[j] : (i64)j;
                if (srcIndex2 && r >= 0) r = (i64)srcIndex2[r];
                if (src && r >= 0) move.src = r < splitRow ? src + (u64)r * dim : srcHigh + (u64)(r - splitRow) * dim;
            }
        }
        hps_warp_move_rows<W>(rows, move, fill, units, log2L, streaming != 0);
    }
}

HPS_INSTANTIATE(copy_rows,
                (float *dst, const i32 *dstIndex, const float *src, const float *srcHigh, i64 splitRow, const i32 *srcIndex,
                 const i32 *srcIndex2, u32 n, const u32 *countPtr, u32 dim, u32 log2L, float fill, u32 streaming),
                (dst, dstIndex, src, srcHigh, splitRow, srcIndex, srcIndex2, n, countPtr, dim, log2L, fill, streaming))

// Counts input keys whose unique key missed: the per-access miss count (hit rate per access).
// flags[u] != 0 means unique key u hit.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    count_missed_accesses(const i32 *inverse, u32 n, const u8 *hitFlags, u32 *counter) {
    for (u64 base = hps_warp_base(); base < n; base += hps_grid_stride()) {
        const u64 i = base + hps_lane();
        const bool miss = i < n && hitFlags[inverse[i]] == 0;
        const u32 mask = __ballot_sync(HPS_FULL_MASK, miss);
        if (hps_lane() == 0 && mask) atomicAdd(counter, (u32)__popc(mask));
    }
}

// Widens int32 keys (models with supportlonglong false) to the int64 keys the caches hold, reading them as
// uint32 as the host path does: out[i] = (i64)(u32)in[i].
extern "C" __global__ void __launch_bounds__(HPS_BLOCK) widen_keys_u32(const u32 *in, u32 n, i64 *out) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) out[i] = (i64)in[i];
}

// Tags the keys of one table of a fused group (Swift: FusedKeyTransform): key k (int32 keys widened as uint32
// first) becomes tag | (k & (2^keyBits − 1)) when it fits — keyBits bits two's complement in an int64 key space,
// 0 ≤ k < 2^32 in a uint32 one (keyBits 32) — else absentKey, a key no table's row has.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    fuse_keys(const void *in, u32 int32Keys, u32 n, u64 tag, u32 keyBits, u64 absentKey, i64 *out) {
    const u32 shift = 64u - keyBits;
    const u64 lowMask = ~0ull >> shift;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        const i64 k = int32Keys ? (i64)((const u32 *)in)[i] : ((const i64 *)in)[i];
        // keyBits 32: a uint32 key space (int64 spaces keep at least 33 key bits).
        const bool fits = keyBits == 32 ? ((u64)k >> 32) == 0 : (((i64)((u64)k << shift)) >> shift) == k;
        out[i] = fits ? (i64)(tag | ((u64)k & lowMask)) : (i64)absentKey;
    }
}
