// The dynamic GPU embedding cache: set-associative, 64 slots per set, least-recently-used replacement within
// a set. The layout and the algorithm are those of the CPU `DynamicCache`, so both give the same answers:
//
//   set(key) = (hi32(mix(key) · 0xD6E8FEB86659FD93)) mod setCount    tag(key) = byte 1 of that product, 0 → 1
//   tags   : u8[setCount · 64]        0 = empty slot
//   slots  : {i64 key, u64 stamp}[setCount · 64]   stamp = the operation clock when last queried or written
//   values : f32[setCount · 64 · dim]
//
// A query compares the set's 64-byte tag line first and reads a key only on a tag match, then stamps the slot
// with the query's clock (a query refreshes recency) and copies the vector. Replace and update process the
// keys of each set in input order, one warp per set, exactly as the CPU cache does sequentially: present key →
// overwrite (replace also stamps), else the first empty slot, else the slot with the smallest stamp (lowest
// index on ties). Keys of different sets never interact, so sets run in parallel.
//
// The host serialises operations on one cache (one stream per cache), so kernels need no set locks.
//
// TinyLFU admission (when the cache has a frequency sketch; the specification is in the CPU
// FrequencySketch.swift, followed here to the bit): a count-min sketch of 4-bit counters, 64-byte blocks of 16
// words, 4 counters per key in one block. A query counts each hit whose slot it stamps first; an insert call
// first ages (dyn_sketch_halve), then counts all its keys
// (dyn_sketch_add), then places them (dyn_apply), where a key that would evict its set's LRU key is admitted
// only if its estimate exceeds that key's. Increments saturate, so their order never matters, and estimates are
// read only by dyn_apply, after every increment of the call: CPU and GPU decide alike. A query tells a slot's
// first hit by exchanging its stamp (atomicExch), so a key repeated within one query is counted once, as on the
// CPU (a plain read-then-store measured no faster on an H200).
#include "hps_common.cuh"

struct __align__(16) DynSlot {
    i64 key;
    u64 stamp;
};

#define DYN_WAYS 64u
#define DYN_GROUP_EMPTY 0xffffffffu
// Members of a group collected and sorted in shared memory; larger groups are walked in input order.
#define DYN_GROUP_CAP 128

__device__ __forceinline__ void dyn_place(i64 key, u32 setCount, u32 &set, u32 &tag) {
    const u64 h = hps_key_mix((u64)key) * 0xD6E8FEB86659FD93ull;
    set = ((u32)(h >> 32)) % setCount;
    const u32 t = (u32)(h >> 8) & 0xffu;
    tag = t == 0u ? 1u : t;
}

__device__ __forceinline__ u32 dyn_word(const uint4 &v, int k) {
    return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}

// Slot (0..63) of `key` in `set`, or -1.
__device__ __forceinline__ i32 dyn_find(const u8 *tags, const DynSlot *slots, u32 set, u32 tag, i64 key) {
    const uint4 *line = reinterpret_cast<const uint4 *>(tags + (u64)set * DYN_WAYS);
    uint4 t[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) t[q] = line[q];
    const u32 pattern = tag * 0x01010101u;
#pragma unroll
    for (int w = 0; w < 16; ++w) {
        u32 m = __vcmpeq4(dyn_word(t[w >> 2], w & 3), pattern);
        while (m != 0u) {
            const u32 bit = __ffs(m) - 1u;
            const i32 s = w * 4 + (i32)(bit >> 3);
            if (slots[(u64)set * DYN_WAYS + s].key == key) return s;
            m &= ~(0xffu << (bit & ~7u));
        }
    }
    return -1;
}

// ---- Frequency sketch ----------------------------------------------------------------------------------------

__device__ __forceinline__ u32 *dyn_sketch_block(u32 *sketch, u32 log2Blocks, i64 key, u32 &sel) {
    const u64 m = hps_key_mix((u64)key);
    const u64 block = log2Blocks == 0u ? 0ull : (m * 0x9E3779B97F4A7C15ull) >> (64u - log2Blocks);
    sel = (u32)((m * 0xC2B2AE3D27D4EB4Full) >> 32);
    return sketch + block * 16ull;
}

// Each of the key's 4 counters + 1, saturating at 15 (compare-and-swap per word).
__device__ __forceinline__ void dyn_sketch_increment(u32 *sketch, u32 log2Blocks, i64 key) {
    u32 sel;
    u32 *block = dyn_sketch_block(sketch, log2Blocks, key, sel);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const u32 b = (sel >> (8 * i)) & 0xffu;
        u32 *w = block + 4 * i + (b & 3u);
        const u32 shift = ((b >> 2) & 7u) * 4u;
        u32 old = __ldcg(w);
        while (((old >> shift) & 15u) != 15u) {
            const u32 seen = atomicCAS(w, old, old + (1u << shift));
            if (seen == old) break;
            old = seen;
        }
    }
}

// The least of the key's 4 counters.
__device__ __forceinline__ u32 dyn_sketch_estimate(const u32 *sketch, u32 log2Blocks, i64 key) {
    u32 sel;
    const u32 *block = dyn_sketch_block(const_cast<u32 *>(sketch), log2Blocks, key, sel);
    u32 least = 15u;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const u32 b = (sel >> (8 * i)) & 0xffu;
        const u32 c = (__ldcg(block + 4 * i + (b & 3u)) >> (((b >> 2) & 7u) * 4u)) & 15u;
        least = c < least ? c : least;
    }
    return least;
}

// A query's hit of `slot`: stamps it; with a sketch, counts the key if this stamp is the slot's first by this
// query. Returns whether it counted.
__device__ __forceinline__ bool dyn_stamp_hit(DynSlot *slots, i32 slot, u64 now, u32 *sketch, u32 log2Blocks, i64 key) {
    if (!sketch) {
        slots[slot].stamp = now;
        return false;
    }
    const unsigned long long old = atomicExch(reinterpret_cast<unsigned long long *>(&slots[slot].stamp), (unsigned long long)now);
    if (old == (unsigned long long)now) return false;
    dyn_sketch_increment(sketch, log2Blocks, key);
    return true;
}

// Adds the warp's counted hits to *additions. Call converged.
__device__ __forceinline__ void dyn_count_additions(bool counted, unsigned long long *additions) {
    const u32 c = __popc(__ballot_sync(HPS_FULL_MASK, counted));
    if (additions && hps_lane() == 0 && c != 0u) atomicAdd(additions, (unsigned long long)c);
}

// An insert call's aging: halves every 4-bit counter of the sketch's `words` words when *additions ≥ sample
// (read only here; the call's first dyn_sketch_add halves *additions after it).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dyn_sketch_halve(u32 *sketch, u64 words, const unsigned long long *additions, u64 sample) {
    if (*additions < sample) return;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += hps_grid_stride()) sketch[i] = (sketch[i] >> 1) & 0x77777777u;
}

// Counts keys of an insert call: each key's counters + 1, *additions += n — halved first when `first` (the call's
// first dyn_sketch_add, right after its dyn_sketch_halve) finds it ≥ sample.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dyn_sketch_add(const i64 *keys, u32 n, u32 *sketch, u32 log2Blocks, unsigned long long *additions, u64 sample, u32 first) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        unsigned long long a = *additions;
        if (first != 0u && a >= sample) a /= 2ull;
        *additions = a + n;
    }
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) dyn_sketch_increment(sketch, log2Blocks, keys[i]);
}

// ---- Query ------------------------------------------------------------------------------------------------

// For i < count (count = *countPtr when given, else n): looks keys[i] up; a hit stamps its slot with `now`
// and (when out is given) copies its vector to out[i·dim]. Misses are appended (order unspecified) to
// missing / missingKeys (each optional) and counted in *missCount. hitFlags[i] (optional) = hit;
// slotOut[i] (optional) = slot index (set·64 + way) or -1. sketch (optional): counts hits (dyn_stamp_hit) and
// adds their number to *additions.
template <int W>
__device__ __forceinline__ void dyn_query_impl(const u8 *tags, DynSlot *slots, const float *values, u32 setCount,
                                               const i64 *keys, u32 n, const u32 *countPtr, u64 now, float *out,
                                               u32 dim, u32 log2L, i32 *missing, i64 *missingKeys, u32 *missCount,
                                               u8 *hitFlags, i32 *slotOut, u32 *sketch, u32 sketchLog2,
                                               unsigned long long *additions) {
    __shared__ HpsWarpRows s_rows[HPS_WARPS_PER_BLOCK];
    HpsWarpRows &rows = s_rows[threadIdx.x >> 5];
    const u32 count = hps_count(n, countPtr);
    const u32 units = dim / W;
    for (u64 base = hps_warp_base(); base < count; base += hps_grid_stride()) {
        const u64 i = base + hps_lane();
        i64 key = 0;
        i32 slot = -1;
        bool counted = false;
        if (i < count) {
            key = keys[i];
            u32 set, tag;
            dyn_place(key, setCount, set, tag);
            const i32 way = dyn_find(tags, slots, set, tag, key);
            if (way >= 0) {
                slot = (i32)(set * DYN_WAYS + (u32)way);
                counted = dyn_stamp_hit(slots, slot, now, sketch, sketchLog2, key);
            }
        }
        if (sketch) dyn_count_additions(counted, additions);
        const bool miss = i < count && slot < 0;
        const u32 at = hps_warp_append(miss, missCount);
        if (miss) {
            if (missing) missing[at] = (i32)i;
            if (missingKeys) missingKeys[at] = key;
        }
        if (i < count) {
            if (hitFlags) hitFlags[i] = slot >= 0 ? 1 : 0;
            if (slotOut) slotOut[i] = slot;
        }
        if (out) {
            HpsRowMove move = {nullptr, nullptr};
            if (slot >= 0) {
                move.src = values + (u64)slot * dim;
                move.dst = out + i * dim;
            }
            hps_warp_move_rows<W>(rows, move, 0.0f, units, log2L, false);
        }
    }
}

HPS_INSTANTIATE(dyn_query,
                (const u8 *tags, DynSlot *slots, const float *values, u32 setCount, const i64 *keys, u32 n,
                 const u32 *countPtr, u64 now, float *out, u32 dim, u32 log2L, i32 *missing, i64 *missingKeys,
                 u32 *missCount, u8 *hitFlags, i32 *slotOut, u32 *sketch, u32 sketchLog2, unsigned long long *additions),
                (tags, slots, values, setCount, keys, n, countPtr, now, out, dim, log2L, missing, missingKeys, missCount,
                 hitFlags, slotOut, sketch, sketchLog2, additions))

// ---- Query, pipelined (rows of 16, 32, 64 or 128 floats) ---------------------------------------------------
//
// The same contract as dyn_query (stamps, misses, flags, slots, vectors), specialised for the common row
// widths, for calls that copy vectors out. A warp handles 32 keys per step as dyn_query does, but the probe of
// its next 32 keys (key → tag line → candidate slot keys → stamp) runs interleaved with the copy of its current
// 32 rows, so the probe's three dependent memory latencies hide behind the row traffic instead of adding to it:
//
//   rows [0, S1): loads | A: load the next keys   | stores | B: place them, load their 64-byte tag lines
//   rows [S1, S2): loads, stores                           | C: compare tags, load ≤ 2 candidate slot keys
//   rows [S2, S3): loads, stores                           | D: confirm, stamp, misses, flags, slots
//   rows [S3, 32): loads, stores
//
// (DynSchedule gives S1..S3 per row width, counted in warp instructions). Rows move as float4: L = DIM/4
// lanes per row (≤ 32), 32/L rows per warp instruction; a chunk is up to UMAX such instructions whose loads
// all issue before the first store, fully unrolled. A lane whose key missed loads row 0 (always there) and stores nothing, so
// loads stay unconditional. STREAM = cache hints: rows read with ld.global.cs and written with st.global.cs
// (evict-first in L1 and L2) and the keys read with ld.global.cs, so the tag lines and slots (small, reused
// by every query) stay in L2 while the vectors stream past. A tag match is confirmed against the slot's key;
// the first two candidates are read at once, further ones (rare: tags are 8 bits) one by one. The stamp is a
// plain store of the call's clock: lanes that race on one slot store the same value.

// Row loads and stores of the pipelined query. On the device they are inline PTX marked volatile (the row
// stores also clobber memory) so that the compiler keeps them where they are written: loads of a chunk all
// issue before its first store, and neither a row load nor a probe load is sunk to its first use (which
// would wait out a full memory latency per row). The store is predicated instead of branched around.
template <bool STREAM> __device__ __forceinline__ float4 dyn_load_row4(const float *p) {
    float4 v;
#if defined(__CUDA_ARCH__)
    if constexpr (STREAM)
        asm volatile("ld.global.cs.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
    else
        asm volatile("ld.global.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
#else
    v = *reinterpret_cast<const float4 *>(p);
#endif
    return v;
}
template <bool STREAM> __device__ __forceinline__ void dyn_store_row4_if(float *p, float4 v, bool pred) {
#if defined(__CUDA_ARCH__)
    if constexpr (STREAM)
        asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %5, 0;\n\t@p st.global.cs.v4.f32 [%0], {%1, %2, %3, %4};\n\t}" ::"l"(p), "f"(v.x),
                     "f"(v.y), "f"(v.z), "f"(v.w), "r"((int)pred)
                     : "memory");
    else
        asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %5, 0;\n\t@p st.global.v4.f32 [%0], {%1, %2, %3, %4};\n\t}" ::"l"(p), "f"(v.x),
                     "f"(v.y), "f"(v.z), "f"(v.w), "r"((int)pred)
                     : "memory");
#else
    if (pred) *reinterpret_cast<float4 *>(p) = v;
#endif
}
template <bool STREAM> __device__ __forceinline__ i64 dyn_load_key(const i64 *p) {
    if constexpr (STREAM) return __ldcs(p);
    else return *p;
}

// Bit b of the result = byte b of x is 0xff (x from __vcmpeq4: each byte 0x00 or 0xff).
__device__ __forceinline__ u32 dyn_byte_bits(u32 x) { return ((x & 0x01010101u) * 0x10204080u) >> 28; }

// The 64-bit mask of the ways of a tag line `t` (16 words of 4 tags) that hold `tag`.
__device__ __forceinline__ u64 dyn_match_mask(const uint4 (&t)[4], u32 tag) {
    const u32 pattern = tag * 0x01010101u;
    u32 lo = 0, hi = 0;
#pragma unroll
    for (int w = 0; w < 8; ++w) lo |= dyn_byte_bits(__vcmpeq4(dyn_word(t[w >> 2], w & 3), pattern)) << (4 * w);
#pragma unroll
    for (int w = 8; w < 16; ++w) hi |= dyn_byte_bits(__vcmpeq4(dyn_word(t[w >> 2], w & 3), pattern)) << (4 * (w - 8));
    return ((u64)hi << 32) | lo;
}

// The probe of one key per lane, advanced stage by stage (kept small: it lives beside the rows in flight).
struct DynProbe {
    u32 i;             // key index (valid: i < count)
    bool valid;
    bool more;         // candidates beyond w1 (read one by one in D)
    i64 key;
    u32 set, tag;
    uint4 t[4];        // the tag line, B → C
    i32 w0, w1;        // first two candidate ways, -1 = none
    i64 k0, k1;        // their keys
    i32 slot;          // result: set·64 + way, or -1
};

template <bool STREAM>
__device__ __forceinline__ void dyn_probe_a(DynProbe &p, u64 base, u32 count, const i64 *keys) {
    const u64 i = base + hps_lane();
    p.valid = i < count;
    p.i = (u32)i;
    p.key = p.valid ? dyn_load_key<STREAM>(keys + i) : 0;
}

__device__ __forceinline__ void dyn_probe_b(DynProbe &p, const u8 *tags, u32 setCount) {
    if (p.valid) {
        dyn_place(p.key, setCount, p.set, p.tag);
        const uint4 *line = reinterpret_cast<const uint4 *>(tags + (u64)p.set * DYN_WAYS);
#pragma unroll
        for (int q = 0; q < 4; ++q) p.t[q] = line[q];
    }
}

__device__ __forceinline__ void dyn_probe_c(DynProbe &p, const DynSlot *slots) {
    p.w0 = -1;
    p.w1 = -1;
    p.more = false;
    if (p.valid) {
        u64 m = dyn_match_mask(p.t, p.tag);
        const DynSlot *set = slots + (u64)p.set * DYN_WAYS;
        if (m != 0) {
            p.w0 = __ffsll((long long)m) - 1;
            m &= m - 1;
            p.k0 = set[p.w0].key;
        }
        if (m != 0) {
            p.w1 = __ffsll((long long)m) - 1;
            m &= m - 1;
            p.k1 = set[p.w1].key;
        }
        p.more = m != 0;
    }
}

// Confirms the candidates, stamps the hit, records misses / flags / slots. Call converged.
__device__ __forceinline__ void dyn_probe_d(DynProbe &p, const u8 *tags, DynSlot *slots, u64 now, i32 *missing, i64 *missingKeys,
                                            u32 *missCount, u8 *hitFlags, i32 *slotOut, u32 *sketch, u32 sketchLog2,
                                            unsigned long long *additions) {
    p.slot = -1;
    bool counted = false;
    if (p.valid) {
        const u32 setBase = p.set * DYN_WAYS;
        i32 way = -1;
        if (p.w0 >= 0 && p.k0 == p.key) way = p.w0;
        else if (p.w1 >= 0 && p.k1 == p.key) way = p.w1;
        else if (p.more) {
            // Rare: a third candidate. Read the tag line again and walk the ways after w1.
            const uint4 *line = reinterpret_cast<const uint4 *>(tags + (u64)setBase);
            uint4 t[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) t[q] = line[q];
            u64 m = dyn_match_mask(t, p.tag) & ~((2ull << p.w1) - 1ull);
            while (m != 0) {
                const i32 w = __ffsll((long long)m) - 1;
                if (slots[setBase + (u32)w].key == p.key) {
                    way = w;
                    break;
                }
                m &= m - 1;
            }
        }
        if (way >= 0) {
            p.slot = (i32)(setBase + (u32)way);
            counted = dyn_stamp_hit(slots, p.slot, now, sketch, sketchLog2, p.key);
        }
    }
    if (sketch) dyn_count_additions(counted, additions);
    const bool miss = p.valid && p.slot < 0;
    const u32 at = hps_warp_append(miss, missCount);
    if (miss) {
        if (missing) missing[at] = (i32)p.i;
        if (missingKeys) missingKeys[at] = p.key;
    }
    if (p.valid) {
        if (hitFlags) hitFlags[p.i] = p.slot >= 0 ? 1 : 0;
        if (slotOut) slotOut[p.i] = p.slot;
    }
}

// Groups [G0, G1) of the copy of the warp's 32 rows (a group = one warp instruction: 32/L rows of L lanes).
// Row j (key base + j) is copied when lane j's `slot` ≥ 0: out[(base + j)·DIM ...] = values[slot·DIM ...]
// (a row without a slot reads row 0, always there, and stores nothing: the loads stay unconditional).
// `between` runs after the loads are issued, before the stores.
template <int DIM, u32 G0, u32 G1, bool STREAM, typename Between>
__device__ __forceinline__ void dyn_copy_groups(const float *values, float *out, u64 base, i32 slot, Between between) {
    constexpr u32 L = DIM / 4;  // lanes per row (one float4 each)
    constexpr u32 R = 32 / L;   // rows per group
    constexpr u32 U = G1 - G0;
    if constexpr (U == 0) {
        between();
    } else {
        const u32 lane = hps_lane();
        const u32 r = lane / L;
        const u32 u = lane % L;
        float4 v[U];
#pragma unroll
        for (u32 k = 0; k < U; ++k) {
            const i32 s = __shfl_sync(HPS_FULL_MASK, slot, (int)((G0 + k) * R + r));
            v[k] = dyn_load_row4<STREAM>(values + (u64)(u32)max(s, 0) * DIM + u * 4u);
        }
        between();
#pragma unroll
        for (u32 k = 0; k < U; ++k) {
            const i32 s = __shfl_sync(HPS_FULL_MASK, slot, (int)((G0 + k) * R + r));
            dyn_store_row4_if<STREAM>(out + (base + (G0 + k) * R + r) * DIM + u * 4u, v[k], s >= 0);
        }
    }
}

// Groups [G0, G1) in chunks of at most UMAX groups; `between` runs inside the first chunk.
template <int DIM, u32 G0, u32 G1, u32 UMAX, bool STREAM, typename Between>
__device__ __forceinline__ void dyn_copy_range(const float *values, float *out, u64 base, i32 slot, Between between) {
    if constexpr (G1 - G0 <= UMAX) {
        dyn_copy_groups<DIM, G0, G1, STREAM>(values, out, base, slot, between);
    } else {
        dyn_copy_groups<DIM, G0, G0 + UMAX, STREAM>(values, out, base, slot, between);
        dyn_copy_range<DIM, G0 + UMAX, G1, UMAX, STREAM>(values, out, base, slot, [] {});
    }
}

// Where the probe stages sit in the copy of a warp's 32 rows (GROUPS = DIM/4 warp instructions): A (key
// loads) inside groups [0, S1), B (tag-line loads) after them, C (slot-key loads) after [S1, S2), D (confirm,
// stamp) after [S2, S3), then the rest; each range in chunks of at most UMAX instructions whose loads are all
// in flight at once (UMAX float4 registers per lane). The tag lines (16 registers per lane) are in flight
// during the short range [S1, S2) only, so they and the rows do not add up beyond the register budget of
// MINB blocks of 256 threads per multiprocessor.
template <int DIM, int SHAPE> struct DynSchedule;
template <> struct DynSchedule<128, 0> { static constexpr u32 S1 = 8, S2 = 12, S3 = 20, UMAX = 8, MINB = 3; };
template <> struct DynSchedule<128, 1> { static constexpr u32 S1 = 4, S2 = 6, S3 = 10, UMAX = 4, MINB = 4; };
template <> struct DynSchedule<64, 0> { static constexpr u32 S1 = 6, S2 = 9, S3 = 13, UMAX = 8, MINB = 3; };
template <> struct DynSchedule<32, 0> { static constexpr u32 S1 = 3, S2 = 5, S3 = 7, UMAX = 4, MINB = 4; };
template <> struct DynSchedule<16, 0> { static constexpr u32 S1 = 1, S2 = 2, S3 = 3, UMAX = 4, MINB = 4; };

template <int DIM, int SHAPE, bool STREAM>
__device__ __forceinline__ void dyn_query_rows_impl(const u8 *tags, DynSlot *slots, const float *values, u32 setCount, const i64 *keys,
                                                    u32 n, const u32 *countPtr, u64 now, float *out, i32 *missing, i64 *missingKeys,
                                                    u32 *missCount, u8 *hitFlags, i32 *slotOut, u32 *sketch, u32 sketchLog2,
                                                    unsigned long long *additions) {
    static_assert(DIM == 16 || DIM == 32 || DIM == 64 || DIM == 128, "row width");
    typedef DynSchedule<DIM, SHAPE> S;
    constexpr u32 GROUPS = DIM / 4;
    const u32 count = hps_count(n, countPtr);
    const u64 stride = hps_grid_stride();
    u64 base = hps_warp_base();
    if (base >= count) return;  // uniform across the warp
    DynProbe p;
    dyn_probe_a<STREAM>(p, base, count, keys);
    dyn_probe_b(p, tags, setCount);
    dyn_probe_c(p, slots);
    dyn_probe_d(p, tags, slots, now, missing, missingKeys, missCount, hitFlags, slotOut, sketch, sketchLog2, additions);
    for (;;) {
        const i32 slot = p.slot;
        const u64 next = base + stride;
        const bool more = next < count;  // uniform
        auto none = [] {};
        auto a = [&] {
            if (more) dyn_probe_a<STREAM>(p, next, count, keys);
        };
        if (out) {
            dyn_copy_range<DIM, 0, S::S1, S::UMAX, STREAM>(values, out, base, slot, a);
            if (more) dyn_probe_b(p, tags, setCount);
            dyn_copy_range<DIM, S::S1, S::S2, S::UMAX, STREAM>(values, out, base, slot, none);
            if (more) dyn_probe_c(p, slots);
            dyn_copy_range<DIM, S::S2, S::S3, S::UMAX, STREAM>(values, out, base, slot, none);
            if (more) dyn_probe_d(p, tags, slots, now, missing, missingKeys, missCount, hitFlags, slotOut, sketch, sketchLog2, additions);
            dyn_copy_range<DIM, S::S3, GROUPS, S::UMAX, STREAM>(values, out, base, slot, none);
        } else if (more) {
            dyn_probe_a<STREAM>(p, next, count, keys);
            dyn_probe_b(p, tags, setCount);
            dyn_probe_c(p, slots);
            dyn_probe_d(p, tags, slots, now, missing, missingKeys, missCount, hitFlags, slotOut, sketch, sketchLog2, additions);
        }
        if (!more) break;
        base = next;
    }
}

// dyn_query_d{DIM}[_cs][_n]: the pipelined query for rows of DIM floats (values and out 16-byte aligned);
// _cs: streaming cache hints; _n: the narrow schedule (fewer rows in flight per warp, more warps).
#define DYN_QUERY_ROWS(name, DIM, SHAPE, STREAM)                                                                         \
    extern "C" __global__ void __launch_bounds__(HPS_BLOCK, (DynSchedule<DIM, SHAPE>::MINB)) name(                        \
        const u8 *tags, DynSlot *slots, const float *values, u32 setCount, const i64 *keys, u32 n, const u32 *countPtr,   \
        u64 now, float *out, i32 *missing, i64 *missingKeys, u32 *missCount, u8 *hitFlags, i32 *slotOut, u32 *sketch,    \
        u32 sketchLog2, unsigned long long *additions) {                                                                  \
        dyn_query_rows_impl<DIM, SHAPE, STREAM>(tags, slots, values, setCount, keys, n, countPtr, now, out, missing,     \
                                                missingKeys, missCount, hitFlags, slotOut, sketch, sketchLog2, additions); \
    }

DYN_QUERY_ROWS(dyn_query_d16, 16, 0, false)
DYN_QUERY_ROWS(dyn_query_d16_cs, 16, 0, true)
DYN_QUERY_ROWS(dyn_query_d32, 32, 0, false)
DYN_QUERY_ROWS(dyn_query_d32_cs, 32, 0, true)
DYN_QUERY_ROWS(dyn_query_d64, 64, 0, false)
DYN_QUERY_ROWS(dyn_query_d64_cs, 64, 0, true)
DYN_QUERY_ROWS(dyn_query_d128, 128, 0, false)
DYN_QUERY_ROWS(dyn_query_d128_cs, 128, 0, true)
DYN_QUERY_ROWS(dyn_query_d128_cs_n, 128, 1, true)

// ---- Reference gather (benchmarks) ---------------------------------------------------------------------------

// out[j·DIM ...] = values[rows[j]·DIM ...] for j < n (rows[j] < 0: nothing), with the pipelined query's copy
// (same chunks, same hints, no probe): what the query's copy alone achieves, beside the generic copy_rows.
template <int DIM, int SHAPE, bool STREAM>
__device__ __forceinline__ void dyn_gather_rows_impl(const float *values, const i32 *rows, u32 n, float *out) {
    typedef DynSchedule<DIM, SHAPE> S;
    for (u64 base = hps_warp_base(); base < n; base += hps_grid_stride()) {
        const u64 j = base + hps_lane();
        const i32 slot = j < n ? rows[j] : -1;
        dyn_copy_range<DIM, 0, DIM / 4, S::UMAX, STREAM>(values, out, base, slot, [] {});
    }
}

#define DYN_GATHER_ROWS(name, DIM, SHAPE, STREAM)                                                                        \
    extern "C" __global__ void __launch_bounds__(HPS_BLOCK, (DynSchedule<DIM, SHAPE>::MINB))                             \
        name(const float *values, const i32 *rows, u32 n, float *out) {                                                   \
        dyn_gather_rows_impl<DIM, SHAPE, STREAM>(values, rows, n, out);                                                  \
    }

DYN_GATHER_ROWS(dyn_gather_d32, 32, 0, false)
DYN_GATHER_ROWS(dyn_gather_d32_cs, 32, 0, true)
DYN_GATHER_ROWS(dyn_gather_d128, 128, 0, false)
DYN_GATHER_ROWS(dyn_gather_d128_cs, 128, 0, true)

// ---- Replace / update ---------------------------------------------------------------------------------------

// Groups the keys by set: a small open-addressing table of set ids (groupSet, 2^(32 − gshift) entries, all
// DYN_GROUP_EMPTY between calls) whose entries head a linked list of the keys of that set (groupHead → next).
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dyn_group(const i64 *keys, u32 n, u32 setCount, u32 *groupSet, i32 *groupHead, u32 gshift, i32 *next, u32 *keySet) {
    const u32 gmask = (u32)((1ull << (32 - gshift)) - 1ull);
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += hps_grid_stride()) {
        u32 set, tag;
        dyn_place(keys[i], setCount, set, tag);
        keySet[i] = set;
        u32 pos = (set * 0x9E3779B1u) >> gshift;
        while (true) {
            const u32 current = __ldcg(groupSet + pos);
            if (current == set) break;
            if (current == DYN_GROUP_EMPTY) {
                const u32 old = atomicCAS(groupSet + pos, DYN_GROUP_EMPTY, set);
                if (old == DYN_GROUP_EMPTY || old == set) break;
            }
            pos = (pos + 1u) & gmask;
        }
        next[i] = atomicExch(groupHead + pos, (i32)i);
    }
}

// The set state a warp holds while it applies one group: lane l holds ways l (a) and l + 32 (b).
struct DynSetState {
    u32 tagA, tagB;
    i64 keyA, keyB;
    u64 stampA, stampB;
};

// Applies key i to the set held in `st` exactly as the CPU cache's replace/update does. Call converged.
template <int W>
__device__ __forceinline__ void dyn_apply_one(DynSetState &st, u32 set, u8 *tags, DynSlot *slots, float *values,
                                              const i64 *keys, const float *src, u64 i, u32 dim, u32 setCount,
                                              u64 now, bool updateOnly, unsigned long long *occupied, const u32 *sketch,
                                              u32 sketchLog2) {
    const u32 lane = hps_lane();
    const i64 key = keys[i];
    u32 s_unused, tag;
    dyn_place(key, setCount, s_unused, tag);
    const u32 fa = __ballot_sync(HPS_FULL_MASK, st.tagA == tag && st.keyA == key);
    const u32 fb = __ballot_sync(HPS_FULL_MASK, st.tagB == tag && st.keyB == key);
    i32 target = fa ? (i32)(__ffs(fa) - 1) : (fb ? (i32)(32 + __ffs(fb) - 1) : -1);
    const u64 base = (u64)set * DYN_WAYS;
    if (target >= 0) {
        if (!updateOnly) {
            if ((u32)target == lane) st.stampA = now;
            if ((u32)target == lane + 32u) st.stampB = now;
            if (lane == 0) slots[base + target].stamp = now;
        }
    } else {
        if (updateOnly) return;
        const u32 ea = __ballot_sync(HPS_FULL_MASK, st.tagA == 0u);
        const u32 eb = __ballot_sync(HPS_FULL_MASK, st.tagB == 0u);
        if (ea | eb) {
            target = ea ? (i32)(__ffs(ea) - 1) : (i32)(32 + __ffs(eb) - 1);
            if (lane == 0) atomicAdd(occupied, 1ull);
        } else {
            u64 bestStamp = st.stampA;
            u32 bestWay = lane;
            if (st.stampB < bestStamp) {
                bestStamp = st.stampB;
                bestWay = lane + 32u;
            }
#pragma unroll
            for (int offset = 16; offset > 0; offset >>= 1) {
                const u64 otherStamp = __shfl_xor_sync(HPS_FULL_MASK, bestStamp, offset);
                const u32 otherWay = __shfl_xor_sync(HPS_FULL_MASK, bestWay, offset);
                if (otherStamp < bestStamp || (otherStamp == bestStamp && otherWay < bestWay)) {
                    bestStamp = otherStamp;
                    bestWay = otherWay;
                }
            }
            target = (i32)bestWay;
            if (sketch) {
                // TinyLFU: admitted only if used more often than the LRU key it would evict.
                const i64 victimA = __shfl_sync(HPS_FULL_MASK, st.keyA, (int)(bestWay & 31u));
                const i64 victimB = __shfl_sync(HPS_FULL_MASK, st.keyB, (int)(bestWay & 31u));
                const i64 victim = bestWay < 32u ? victimA : victimB;
                if (dyn_sketch_estimate(sketch, sketchLog2, key) <= dyn_sketch_estimate(sketch, sketchLog2, victim)) return;
            }
        }
        if ((u32)target == lane) {
            st.tagA = tag;
            st.keyA = key;
            st.stampA = now;
        }
        if ((u32)target == lane + 32u) {
            st.tagB = tag;
            st.keyB = key;
            st.stampB = now;
        }
        if (lane == 0) {
            tags[base + target] = (u8)tag;
            DynSlot fresh;
            fresh.key = key;
            fresh.stamp = now;
            slots[base + target] = fresh;
        }
    }
    hps_warp_copy_row<W>(values + (base + (u64)target) * dim, src + i * dim, dim / W);
}

// One warp per 32 group entries; each group (= one set) is applied in input order: members are collected
// from the list and sorted in shared memory, or, for groups larger than DYN_GROUP_CAP, found by walking the
// keys in input order. Each processed group entry is returned to empty.
template <int W>
__device__ __forceinline__ void dyn_apply_impl(u8 *tags, DynSlot *slots, float *values, u32 setCount, const i64 *keys,
                                               const float *src, u32 n, u32 dim, u64 now, u32 updateOnly, u32 *groupSet,
                                               i32 *groupHead, u32 groupCapacity, const i32 *next, const u32 *keySet,
                                               unsigned long long *occupied, const u32 *sketch, u32 sketchLog2) {
    __shared__ i32 s_members[HPS_WARPS_PER_BLOCK][DYN_GROUP_CAP];
    __shared__ i32 s_sorted[HPS_WARPS_PER_BLOCK][DYN_GROUP_CAP];
    i32 *members = s_members[threadIdx.x >> 5];
    i32 *sorted = s_sorted[threadIdx.x >> 5];
    const u32 lane = hps_lane();
    for (u64 gbase = hps_warp_base(); gbase < groupCapacity; gbase += hps_grid_stride()) {
        const u64 g = gbase + lane;
        const u32 mySet = g < groupCapacity ? groupSet[g] : DYN_GROUP_EMPTY;
        u32 pending = __ballot_sync(HPS_FULL_MASK, mySet != DYN_GROUP_EMPTY);
        while (pending) {
            const u32 j = __ffs(pending) - 1u;
            pending &= pending - 1u;
            const u32 set = __shfl_sync(HPS_FULL_MASK, mySet, j);
            const u64 entry = gbase + j;
            // Collect up to DYN_GROUP_CAP + 1 members.
            i32 count = 0;
            if (lane == 0) {
                i32 p = groupHead[entry];
                while (p >= 0 && count <= DYN_GROUP_CAP) {
                    if (count < DYN_GROUP_CAP) members[count] = p;
                    ++count;
                    p = next[p];
                }
            }
            count = __shfl_sync(HPS_FULL_MASK, count, 0);
            __syncwarp();
            DynSetState st;
            const u64 base = (u64)set * DYN_WAYS;
            st.tagA = tags[base + lane];
            st.tagB = tags[base + lane + 32u];
            const DynSlot sa = slots[base + lane];
            const DynSlot sb = slots[base + lane + 32u];
            st.keyA = sa.key;
            st.stampA = sa.stamp;
            st.keyB = sb.key;
            st.stampB = sb.stamp;
            const bool updating = updateOnly != 0u;
            if (count <= DYN_GROUP_CAP) {
                // Rank sort (indices are distinct).
                for (i32 e = (i32)lane; e < count; e += 32) {
                    const i32 v = members[e];
                    i32 rank = 0;
                    for (i32 k = 0; k < count; ++k) rank += members[k] < v ? 1 : 0;
                    sorted[rank] = v;
                }
                __syncwarp();
                for (i32 k = 0; k < count; ++k) {
                    dyn_apply_one<W>(st, set, tags, slots, values, keys, src, (u64)sorted[k], dim, setCount, now,
                                     updating, occupied, sketch, sketchLog2);
                }
            } else {
                for (u64 kbase = 0; kbase < n; kbase += 32u) {
                    const u64 i = kbase + lane;
                    u32 mine = __ballot_sync(HPS_FULL_MASK, i < n && keySet[i] == set);
                    while (mine) {
                        const u32 b = __ffs(mine) - 1u;
                        mine &= mine - 1u;
                        dyn_apply_one<W>(st, set, tags, slots, values, keys, src, kbase + b, dim, setCount, now,
                                         updating, occupied, sketch, sketchLog2);
                    }
                }
            }
            __syncwarp();
            if (lane == 0) {
                groupSet[entry] = DYN_GROUP_EMPTY;
                groupHead[entry] = -1;
            }
        }
    }
}

HPS_INSTANTIATE(dyn_apply,
                (u8 * tags, DynSlot *slots, float *values, u32 setCount, const i64 *keys, const float *src, u32 n,
                 u32 dim, u64 now, u32 updateOnly, u32 *groupSet, i32 *groupHead, u32 groupCapacity, const i32 *next,
                 const u32 *keySet, unsigned long long *occupied, const u32 *sketch, u32 sketchLog2),
                (tags, slots, values, setCount, keys, src, n, dim, now, updateOnly, groupSet, groupHead, groupCapacity,
                 next, keySet, occupied, sketch, sketchLog2))

// ---- Dump -----------------------------------------------------------------------------------------------------

// Appends the keys cached in sets [firstSet, firstSet + setCountToDump) to keysOut (order across sets
// unspecified, ways in order within a set) and counts them in *dumped.
extern "C" __global__ void __launch_bounds__(HPS_BLOCK)
    dyn_dump(const u8 *tags, const DynSlot *slots, u32 firstSet, u32 setCountToDump, i64 *keysOut, u32 *dumped) {
    const u32 lane = hps_lane();
    for (u64 w = hps_warp_base() >> 5; w < setCountToDump; w += hps_grid_stride() >> 5) {
        const u64 base = ((u64)firstSet + w) * DYN_WAYS;
        const bool a = tags[base + lane] != 0;
        const bool b = tags[base + lane + 32u] != 0;
        const u32 ma = __ballot_sync(HPS_FULL_MASK, a);
        const u32 mb = __ballot_sync(HPS_FULL_MASK, b);
        u32 start = 0;
        if (lane == 0 && (ma | mb)) start = atomicAdd(dumped, (u32)(__popc(ma) + __popc(mb)));
        start = __shfl_sync(HPS_FULL_MASK, start, 0);
        const u32 below = (1u << lane) - 1u;
        if (a) keysOut[start + __popc(ma & below)] = slots[base + lane].key;
        if (b) keysOut[start + __popc(ma) + __popc(mb & below)] = slots[base + lane + 32u].key;
    }
}
