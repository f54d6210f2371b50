// Workload generators for `hps bench cache` and `hps gpu-check`. The host has identical functions
// (CUDAWorkload in Swift), so the CPU device and the checks reproduce the same keys and values.
#include "hps_common.cuh"

__device__ __forceinline__ u64 bench_mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// keys[i] = Zipf rank of draw `first + i` of stream `seed`: u = uniform [0, 1) from the draw's hash, rank =
// the first r with cdf[r] ≥ u (cdf ascending, cdf[rows − 1] = 1).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    bench_zipf_keys(const double *cdf, u32 rows, u64 seed, u64 first, u32 n, i64 *keys) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) {
        const u64 h = bench_mix(seed + (first + i + 1ull) * 0x9E3779B97F4A7C15ull);
        const double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
        u32 lo = 0, hi = rows - 1u;
        while (lo < hi) {
            const u32 mid = (lo + hi) >> 1;
            if (cdf[mid] < u) lo = mid + 1u;
            else hi = mid;
        }
        keys[i] = (i64)lo;
    }
}

// values[r·dim + e] for rows [firstRow, firstRow + rows): a float with 24 random bits in (−1, 1), exact.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    bench_fill_values(float *values, u64 firstRow, u32 rows, u32 dim, u64 seed) {
    const u64 total = (u64)rows * dim;
    for (u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += hps_grid_stride()) {
        const u64 element = (firstRow * dim) + t;
        const u64 h = bench_mix(seed ^ (element * 0x9E3779B97F4A7C15ull));
        values[t] = (float)((i32)(h >> 40) - 8388608) * (1.0f / 8388608.0f);
    }
}

// out[j·dim + e] = the value bench_fill_values gives row keys[j], element e (j < count).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    bench_key_values(const i64 *keys, u32 n, const u32 *countPtr, u32 dim, u64 seed, float *out) {
    const u64 total = (u64)hps_count(n, countPtr) * dim;
    for (u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += hps_grid_stride()) {
        const u64 j = t / dim;
        const u64 element = (u64)keys[j] * dim + (t - j * dim);
        const u64 h = bench_mix(seed ^ (element * 0x9E3779B97F4A7C15ull));
        out[t] = (float)((i32)(h >> 40) - 8388608) * (1.0f / 8388608.0f);
    }
}

// keys[i] = (first + i) · multiplier + offset (distinct keys for an odd multiplier).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    bench_sequence_keys(i64 *keys, u32 n, u64 first, u64 multiplier, u64 offset) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) {
        keys[i] = (i64)((first + i) * multiplier + offset);
    }
}

// keys[i] = table[rows[i]] (keys of chosen rows).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    bench_pick_keys(const i64 *table, const i32 *rows, u32 n, i64 *keys) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) keys[i] = table[rows[i]];
}
