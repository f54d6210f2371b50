// Deduplication on the GPU: distinct keys + each input's position among them (the inverse index).
//
// An open-addressing table of `capacity = 2^log2` int64 keys (load ≤ 1/2 for the largest batch), linear
// probing from a multiplicative hash. The table is never cleared as a whole: `dedup_clear` resets only the
// slots a batch claimed, so the cost is proportional to the distinct keys, not to the table. The key value
// that marks an empty slot (DEDUP_EMPTY) can itself occur as a key: it is tracked by a flag word and gets
// the extra position `capacity`.
//
//   memset(uniqueCount, 0) → dedup_insert → dedup_resolve → (use unique keys / inverse) → dedup_clear
//
// The order of the distinct keys is the order in which threads claimed them (not input order).
#include "hps_common.cuh"

#define DEDUP_EMPTY 0x7fffffff7fffffffull

__device__ __forceinline__ u32 dedup_position(u64 key, u32 shift) {
    return (u32)((key * 0x9E3779B97F4A7C15ull) >> shift);
}

// Claims a table slot for each input key. New keys get a unique index (warp-aggregated counter) and are
// written to uniqueKeys; every input writes its slot position to positions[i].
// table: capacity entries (all DEDUP_EMPTY between batches); slotIndex: capacity + 1 entries.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dedup_insert(const i64 *keys, u32 n, u64 *table, i32 *slotIndex, u32 shift, u32 *sentinel, u32 *uniqueCount,
                 i64 *uniqueKeys, u32 *uniquePositions, u32 *positions) {
    const u32 mask = (u32)((1ull << (64 - shift)) - 1ull);
    for (u64 base = hps_warp_base(); base < n; base += hps_grid_stride()) {
        const u64 i = base + hps_lane();
        bool isNew = false;
        u32 pos = 0;
        u64 key = 0;
        if (i < n) {
            key = (u64)keys[i];
            if (key == DEDUP_EMPTY) {
                pos = mask + 1u;
                isNew = atomicCAS(sentinel, 0u, 1u) == 0u;
            } else {
                pos = dedup_position(key, shift);
                while (true) {
                    const u64 current = __ldcg(table + pos);
                    if (current == key) break;
                    if (current == DEDUP_EMPTY) {
                        const u64 old = atomicCAS(table + pos, DEDUP_EMPTY, key);
                        if (old == DEDUP_EMPTY) {
                            isNew = true;
                            break;
                        }
                        if (old == key) break;
                    }
                    pos = (pos + 1u) & mask;
                }
            }
        }
        const u32 index = hps_warp_append(isNew, uniqueCount);
        if (isNew) {
            uniqueKeys[index] = (i64)key;
            slotIndex[pos] = (i32)index;
            uniquePositions[index] = pos;
        }
        if (i < n) positions[i] = pos;
    }
}

// inverse[i] = unique index of input i (may alias positions).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dedup_resolve(const u32 *positions, u32 n, const i32 *slotIndex, i32 *inverse) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) {
        inverse[i] = slotIndex[positions[i]];
    }
}

// Returns the slots claimed by the last batch to empty.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dedup_clear(const u32 *uniquePositions, const u32 *uniqueCount, u32 maxCount, u64 *table, u32 shift, u32 *sentinel) {
    const u32 mask = (u32)((1ull << (64 - shift)) - 1ull);
    const u32 count = hps_count(maxCount, uniqueCount);
    for (u64 u = (u64)blockIdx.x * blockDim.x + threadIdx.x; u < count; u += hps_grid_stride()) {
        const u32 pos = uniquePositions[u];
        if (pos == mask + 1u) *sentinel = 0u;
        else table[pos] = DEDUP_EMPTY;
    }
}
