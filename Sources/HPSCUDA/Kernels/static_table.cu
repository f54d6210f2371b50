// The static and uvm GPU tables: the whole table behind an open-addressing index on the GPU.
//
//   index   : {i64 key, u32 row + 1 (0 = empty), u32 unused}[2^k], linear probing from mix(key)
//   rowKeys : i64[capacity]                  key of each row, rows numbered in insertion order
//   rows    : row r < deviceRows → deviceValues + r·dim (device memory)
//             row r ≥ deviceRows → hostValues + (r − deviceRows)·dim (pinned host memory read through its
//             mapped device pointer: the uvm table's cold part)
//
// Row numbers are assigned by the host in input order (so a table fills exactly like the CPU StaticCache);
// the kernels find rows, insert index entries for new keys, write rows and answer queries.
#include "hps_common.cuh"

struct __align__(16) StEntry {
    i64 key;
    u32 row1;
    u32 unused;
};

__device__ __forceinline__ u32 st_position(i64 key, u32 mask) { return (u32)hps_key_mix((u64)key) & mask; }

__device__ __forceinline__ i32 st_find_row(const StEntry *index, u32 mask, i64 key) {
    u32 pos = st_position(key, mask);
    while (true) {
        const StEntry e = index[pos];
        if (e.row1 == 0u) return -1;
        if (e.key == key) return (i32)(e.row1 - 1u);
        pos = (pos + 1u) & mask;
    }
}

__device__ __forceinline__ float *st_row(float *deviceValues, float *hostValues, i64 deviceRows, i64 row, u32 dim) {
    return row < deviceRows ? deviceValues + (u64)row * dim : hostValues + (u64)(row - deviceRows) * dim;
}

// rowsOut[i] = row of keys[i], or -1.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    st_find(const StEntry *index, u32 mask, const i64 *keys, u32 n, i32 *rowsOut) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) {
        rowsOut[i] = st_find_row(index, mask, keys[i]);
    }
}

// Adds index entries for keys that are not in the index (distinct within the call) and records row keys.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    st_insert(StEntry *index, u32 mask, const i64 *keys, const i32 *rows, u32 n, i64 *rowKeys) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) {
        const i64 key = keys[i];
        const i32 row = rows[i];
        u32 pos = st_position(key, mask);
        while (atomicCAS(&index[pos].row1, 0u, (u32)row + 1u) != 0u) pos = (pos + 1u) & mask;
        index[pos].key = key;
        rowKeys[row] = key;
    }
}

// Table row rows[j] = src row srcIndex[j], for j < n.
template <int W>
__device__ __forceinline__ void st_write_rows_impl(float *deviceValues, float *hostValues, i64 deviceRows, const i32 *rows,
                                                   const i32 *srcIndex, const float *src, u32 n, u32 dim, u32 log2L) {
    __shared__ HpsWarpRows s_rows[HPS_WARPS_PER_BLOCK];
    HpsWarpRows &staging = s_rows[threadIdx.x >> 5];
    for (u64 base = hps_warp_base(); base < n; base += hps_grid_stride()) {
        const u64 j = base + hps_lane();
        HpsRowMove move = {nullptr, nullptr};
        if (j < n) {
            move.dst = st_row(deviceValues, hostValues, deviceRows, rows[j], dim);
            move.src = src + (u64)srcIndex[j] * dim;
        }
        hps_warp_move_rows<W>(staging, move, 0.0f, dim / W, log2L, false);
    }
}

HPS_INSTANTIATE(st_write_rows,
                (float *deviceValues, float *hostValues, i64 deviceRows, const i32 *rows, const i32 *srcIndex,
                 const float *src, u32 n, u32 dim, u32 log2L),
                (deviceValues, hostValues, deviceRows, rows, srcIndex, src, n, dim, log2L))

// For i < count: copies the row of keys[i] to out[i·dim] (when out is given); misses are appended to
// missing / missingKeys (optional, order unspecified) and counted in *missCount; hitFlags[i] and rowOut[i]
// as in dyn_query.
template <int W>
__device__ __forceinline__ void st_query_impl(const StEntry *index, u32 mask, float *deviceValues, float *hostValues,
                                              i64 deviceRows, const i64 *keys, u32 n, const u32 *countPtr, float *out,
                                              u32 dim, u32 log2L, i32 *missing, i64 *missingKeys, u32 *missCount,
                                              u8 *hitFlags, i32 *rowOut) {
    __shared__ HpsWarpRows s_rows[HPS_WARPS_PER_BLOCK];
    HpsWarpRows &staging = s_rows[threadIdx.x >> 5];
    const u32 count = hps_count(n, countPtr);
    for (u64 base = hps_warp_base(); base < count; base += hps_grid_stride()) {
        const u64 i = base + hps_lane();
        i64 key = 0;
        i32 row = -1;
        if (i < count) {
            key = keys[i];
            row = st_find_row(index, mask, key);
        }
        const bool miss = i < count && row < 0;
        const u32 at = hps_warp_append(miss, missCount);
        if (miss) {
            if (missing) missing[at] = (i32)i;
            if (missingKeys) missingKeys[at] = key;
        }
        if (i < count) {
            if (hitFlags) hitFlags[i] = row >= 0 ? 1 : 0;
            if (rowOut) rowOut[i] = row;
        }
        if (out) {
            HpsRowMove move = {nullptr, nullptr};
            if (row >= 0) {
                move.src = st_row(deviceValues, hostValues, deviceRows, row, dim);
                move.dst = out + i * dim;
            }
            hps_warp_move_rows<W>(staging, move, 0.0f, dim / W, log2L, true);  // evict-first stores: the index and hot rows stay in L2
        }
    }
}

HPS_INSTANTIATE(st_query,
                (const StEntry *index, u32 mask, float *deviceValues, float *hostValues, i64 deviceRows, const i64 *keys,
                 u32 n, const u32 *countPtr, float *out, u32 dim, u32 log2L, i32 *missing, i64 *missingKeys,
                 u32 *missCount, u8 *hitFlags, i32 *rowOut),
                (index, mask, deviceValues, hostValues, deviceRows, keys, n, countPtr, out, dim, log2L, missing,
                 missingKeys, missCount, hitFlags, rowOut))
