// Checks the HPS CUDA kernels' logic on the CPU through emu.h (no GPU needed):
//   scripts/cuda-emulator-test.sh
// Each kernel is driven the way the Swift host code drives it and compared with a plain sequential
// reference (the CPU DynamicCache / StaticCache algorithms ported to C++, std::unordered_map for dedup).
#include "emu.h"
#include "../../Sources/HPSCUDA/Kernels/rows.cu"
#include "../../Sources/HPSCUDA/Kernels/dedup.cu"
#include "../../Sources/HPSCUDA/Kernels/dynamic_cache.cu"
#include "../../Sources/HPSCUDA/Kernels/static_table.cu"
#include "../../Sources/HPSCUDA/Kernels/bench.cu"

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>

EMU_DEFINE_GLOBALS

static int failures = 0, checks = 0;
#define CHECK(cond, ...)                                                                                         \
    do {                                                                                                         \
        ++checks;                                                                                                \
        if (!(cond)) {                                                                                           \
            ++failures;                                                                                          \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            std::fprintf(stderr, __VA_ARGS__);                                                                   \
            std::fprintf(stderr, "\n");                                                                          \
            if (failures > 20) std::exit(1);                                                                     \
        }                                                                                                        \
    } while (0)

static const unsigned kBlock = 64, kResident = 3;  // small blocks keep the emulator quick; the kernels take any multiple of 32
static unsigned gridFor(u64 threads) { return (unsigned)std::max<u64>(1, std::min<u64>((threads + kBlock - 1) / kBlock, kResident)); }

template <typename T> T *dalloc(size_t n, int fill = 0) {
    void *p = std::aligned_alloc(256, ((n * sizeof(T) + 255) / 256) * 256 + 256);
    std::memset(p, fill, n * sizeof(T) + 256);
    return (T *)p;
}

static u32 log2Lanes(u32 units) {
    u32 log = 0;
    while (log < 5 && (1u << log) < units) ++log;
    return log;
}
static int widthFor(u32 dim) { return dim % 4 == 0 ? 4 : (dim % 2 == 0 ? 2 : 1); }

static u64 keyMix(u64 x) {
    x ^= ((x >> 25) | (x << 39)) ^ ((x >> 50) | (x << 14));
    x *= 0xA24BAED4963EE407ull;
    x ^= ((x >> 24) | (x << 40)) ^ ((x >> 49) | (x << 15));
    x *= 0x9FB21C651E98DF25ull;
    return x ^ (x >> 28);
}

static float valueOf(i64 key, int version, u32 e) {
    u64 h = keyMix((u64)key * 31 + (u64)version * 1000003 + e);
    return (float)((i32)(h >> 40) - 8388608) / 8388608.0f;
}

// ---- Reference: the TinyLFU frequency sketch (FrequencySketch.swift's specification), sequential -------------
struct RefSketch {
    std::vector<u32> words;
    u32 log2Blocks = 0;
    u64 additions = 0, sample = 0;
    explicit RefSketch(u32 slots) {
        u32 needed = std::max(1u, (slots + 3) / 4), blocks = 1;
        while (blocks < needed) blocks <<= 1, ++log2Blocks;
        words.assign((size_t)blocks * 16, 0);
        sample = 12ull * slots;
    }
    // The word and nibble shift of counter i of `key`.
    u32 &counter(i64 key, int i, u32 &shift) {
        u64 m = keyMix((u64)key);
        u64 block = log2Blocks == 0 ? 0 : (m * 0x9E3779B97F4A7C15ull) >> (64 - log2Blocks);
        u32 sel = (u32)((m * 0xC2B2AE3D27D4EB4Full) >> 32);
        u32 b = (sel >> (8 * i)) & 0xff;
        shift = ((b >> 2) & 7) * 4;
        return words[block * 16 + 4 * i + (b & 3)];
    }
    void increment(i64 key) {
        for (int i = 0; i < 4; ++i) {
            u32 shift;
            u32 &w = counter(key, i, shift);
            if (((w >> shift) & 15) < 15) w += 1u << shift;
        }
    }
    u32 estimate(i64 key) {
        u32 least = 15;
        for (int i = 0; i < 4; ++i) {
            u32 shift;
            least = std::min(least, (counter(key, i, shift) >> shift) & 15);
        }
        return least;
    }
    void ageIfDue() {
        if (additions < sample) return;
        additions /= 2;
        for (u32 &w : words) {
            u32 halved = 0;
            for (int n = 0; n < 8; ++n) halved |= (((w >> (4 * n)) & 15) / 2) << (4 * n);
            w = halved;
        }
    }
};

// ---- Reference: the CPU DynamicCache, sequential -------------------------------------------------------------
struct RefDynamic {
    u32 sets, dim;
    std::vector<u8> tags;
    std::vector<i64> keys;
    std::vector<u64> stamps;
    std::vector<float> values;
    u64 clock = 1;
    std::unique_ptr<RefSketch> sketch;  // TinyLFU admission when set
    size_t refused = 0;                 // keys not admitted
    RefDynamic(u32 s, u32 d, bool admission = false) : sets(s), dim(d), tags(s * 64), keys(s * 64), stamps(s * 64), values((size_t)s * 64 * d) {
        if (admission) sketch.reset(new RefSketch(s * 64));
    }
    void place(i64 key, u32 &set, u8 &tag) const {
        u64 h = keyMix((u64)key) * 0xD6E8FEB86659FD93ull;
        set = (u32)((h >> 32) % sets);
        u8 t = (u8)(h >> 8);
        tag = t == 0 ? 1 : t;
    }
    int slot(i64 key, u32 set, u8 tag) const {
        for (int s = 0; s < 64; ++s)
            if (tags[set * 64 + s] == tag && keys[set * 64 + s] == key) return s;
        return -1;
    }
    std::vector<int> query(const std::vector<i64> &in, std::vector<float> &out) {
        u64 now = ++clock;
        std::vector<int> missing;
        out.assign(in.size() * dim, NAN);
        for (size_t i = 0; i < in.size(); ++i) {
            u32 set;
            u8 tag;
            place(in[i], set, tag);
            int s = slot(in[i], set, tag);
            if (s >= 0) {
                std::copy_n(&values[(size_t)(set * 64 + s) * dim], dim, &out[i * dim]);
                if (sketch && stamps[set * 64 + s] != now) sketch->increment(in[i]), sketch->additions += 1;
                stamps[set * 64 + s] = now;
            } else {
                missing.push_back((int)i);
            }
        }
        return missing;
    }
    void write(const std::vector<i64> &in, const std::vector<float> &src, bool updateOnly) {
        u64 now = updateOnly ? clock : ++clock;
        if (sketch && !updateOnly) {
            sketch->ageIfDue();
            for (i64 k : in) sketch->increment(k);
            sketch->additions += in.size();
        }
        for (size_t i = 0; i < in.size(); ++i) {
            u32 set;
            u8 tag;
            place(in[i], set, tag);
            int s = slot(in[i], set, tag);
            if (s < 0) {
                if (updateOnly) continue;
                int victim = 0;
                u64 oldest = ~0ull;
                bool empty = false;
                for (int j = 0; j < 64; ++j) {
                    if (tags[set * 64 + j] == 0) {
                        victim = j;
                        empty = true;
                        break;
                    }
                    if (stamps[set * 64 + j] < oldest) {
                        oldest = stamps[set * 64 + j];
                        victim = j;
                    }
                }
                if (!empty && sketch && sketch->estimate(in[i]) <= sketch->estimate(keys[set * 64 + victim])) {
                    ++refused;
                    continue;
                }
                s = victim;
                tags[set * 64 + s] = tag;
                keys[set * 64 + s] = in[i];
            }
            std::copy_n(&src[i * dim], dim, &values[(size_t)(set * 64 + s) * dim]);
            if (!updateOnly) stamps[set * 64 + s] = now;
        }
    }
};

// ---- The GPU dynamic cache, driven like CUDADynamicCache.swift ------------------------------------------------
struct EmuDynamic {
    u32 sets, dim, chunk, groupCap, groupShift;
    u8 *tags;
    DynSlot *slots;
    float *values;
    unsigned long long *occupied;
    u32 *groupSet;
    i32 *groupHead, *next;
    u32 *keySet, *missCount;
    u64 clock = 1;
    // TinyLFU admission (sketch non-null): the counters and the counted keys.
    u32 *sketch = nullptr, sketchLog2 = 0;
    u64 sketchWords = 0, sample = 0;
    unsigned long long *additions = nullptr;
    EmuDynamic(u32 s, u32 d, u32 c, bool admission = false) : sets(s), dim(d), chunk(c) {
        if (admission) {
            u32 needed = std::max(1u, (s * 64 + 3) / 4), blocks = 1;
            while (blocks < needed) blocks <<= 1, ++sketchLog2;
            sketchWords = (u64)blocks * 16;
            sketch = dalloc<u32>(sketchWords);
            additions = dalloc<unsigned long long>(1);
            sample = 12ull * s * 64;
        }
        tags = dalloc<u8>(s * 64);
        slots = dalloc<DynSlot>(s * 64);
        values = dalloc<float>((size_t)s * 64 * d);
        occupied = dalloc<unsigned long long>(1);
        u32 g = 1, log = 0;
        while (g < std::max(64u, 2 * c)) g <<= 1, ++log;
        groupCap = g;
        groupShift = 32 - log;
        groupSet = dalloc<u32>(g, 0xff);
        groupHead = dalloc<i32>(g, 0xff);
        next = dalloc<i32>(c);
        keySet = dalloc<u32>(c);
        missCount = dalloc<u32>(1);
    }
    // kernel: 0 = dyn_query (classic), 1 = dyn_query_d{dim}, 2 = dyn_query_d{dim}_cs, 3 = dyn_query_d128_cs_n.
    // copyOut = false: the kernel gets no output pointer (hits only stamp and report their slot).
    std::vector<int> query(const std::vector<i64> &in, std::vector<float> &out, std::vector<i32> *slotOut = nullptr, int kernel = 0, bool copyOut = true) {
        u64 now = ++clock;
        u32 n = (u32)in.size();
        i64 *k = dalloc<i64>(n + 1);
        std::copy(in.begin(), in.end(), k);
        float *o = dalloc<float>((size_t)n * dim + 4);
        u8 *flags = dalloc<u8>(n + 1);
        i32 *so = dalloc<i32>(n + 1);
        i32 *miss = dalloc<i32>(n + 1);
        i64 *missKeys = dalloc<i64>(n + 1);
        *missCount = 0;
        float *outArg = copyOut ? o : nullptr;
        if (kernel == 0) {
            int w = widthFor(dim);
            auto kfn = w == 4 ? dyn_query_v4 : (w == 2 ? dyn_query_v2 : dyn_query_v1);
            emu_launch(kfn, gridFor(n), kBlock, (const u8 *)tags, slots, (const float *)values, sets, (const i64 *)k, n, (const u32 *)nullptr, now, outArg, dim,
                       log2Lanes(dim / w), miss, missKeys, missCount, flags, so, sketch, sketchLog2, additions);
        } else {
            decltype(&dyn_query_d128) kfn = nullptr;
            if (kernel == 3) kfn = dim == 128 ? dyn_query_d128_cs_n : nullptr;
            else if (dim == 16) kfn = kernel == 1 ? dyn_query_d16 : dyn_query_d16_cs;
            else if (dim == 32) kfn = kernel == 1 ? dyn_query_d32 : dyn_query_d32_cs;
            else if (dim == 64) kfn = kernel == 1 ? dyn_query_d64 : dyn_query_d64_cs;
            else if (dim == 128) kfn = kernel == 1 ? dyn_query_d128 : dyn_query_d128_cs;
            if (!kfn) {
                std::fprintf(stderr, "no pipelined query kernel %d for dim %u\n", kernel, dim);
                std::exit(2);
            }
            emu_launch(kfn, gridFor(n), kBlock, (const u8 *)tags, slots, (const float *)values, sets, (const i64 *)k, n, (const u32 *)nullptr, now, outArg,
                       miss, missKeys, missCount, flags, so, sketch, sketchLog2, additions);
        }
        std::vector<int> missing;
        out.assign((size_t)n * dim, NAN);
        bool sane = true;
        for (u32 i = 0; i < n; ++i) {
            if (flags[i]) {
                std::copy_n(&o[(size_t)i * dim], dim, &out[(size_t)i * dim]);
                sane = sane && so[i] >= 0 && slots[so[i]].key == in[i];
            } else {
                missing.push_back((int)i);
                sane = sane && so[i] == -1;
                // A miss writes nothing to the output.
                for (u32 e = 0; e < dim; ++e) sane = sane && o[(size_t)i * dim + e] == 0.0f;
            }
            if (!copyOut) for (u32 e = 0; e < dim; ++e) sane = sane && o[(size_t)i * dim + e] == 0.0f;
        }
        CHECK(sane, "query kernel %d dim %u: flags / slots / untouched rows inconsistent", kernel, dim);
        CHECK(*missCount == missing.size(), "missCount %u vs %zu", *missCount, missing.size());
        std::vector<int> listed(miss, miss + std::min<u32>(*missCount, n));
        std::sort(listed.begin(), listed.end());
        bool keysOk = true;
        for (u32 j = 0; j < std::min<u32>(*missCount, n); ++j) keysOk = keysOk && miss[j] >= 0 && (u32)miss[j] < n && missKeys[j] == in[miss[j]];
        CHECK(listed == missing && keysOk, "query kernel %d dim %u: missing / missingKeys lists wrong", kernel, dim);
        CHECK(o[(size_t)n * dim] == 0.0f, "query kernel %d dim %u wrote past the output", kernel, dim);
        if (slotOut) slotOut->assign(so, so + n);
        free(k), free(o), free(flags), free(so), free(miss), free(missKeys);
        return missing;
    }
    void write(const std::vector<i64> &in, const std::vector<float> &src, bool updateOnly) {
        if (!updateOnly) ++clock;
        u64 now = clock;
        if (sketch && !updateOnly && !in.empty()) {
            // As CUDADynamicCache.apply: age, then count every key of the call, then place them chunk by chunk.
            i64 *all = dalloc<i64>(in.size());
            std::copy(in.begin(), in.end(), all);
            emu_launch(dyn_sketch_halve, gridFor(sketchWords), kBlock, sketch, sketchWords, (const unsigned long long *)additions, sample);
            emu_launch(dyn_sketch_add, gridFor(in.size()), kBlock, (const i64 *)all, (u32)in.size(), sketch, sketchLog2, additions, sample, 1u);
            free(all);
        }
        for (size_t start = 0; start < in.size(); start += chunk) {
            u32 m = (u32)std::min<size_t>(chunk, in.size() - start);
            i64 *k = dalloc<i64>(m);
            float *v = dalloc<float>((size_t)m * dim);
            std::copy_n(&in[start], m, k);
            std::copy_n(&src[start * dim], (size_t)m * dim, v);
            emu_launch(dyn_group, gridFor(m), kBlock, (const i64 *)k, m, sets, groupSet, groupHead, groupShift, next, keySet);
            int w = widthFor(dim);
            auto kernel = w == 4 ? dyn_apply_v4 : (w == 2 ? dyn_apply_v2 : dyn_apply_v1);
            emu_launch(kernel, gridFor(groupCap), kBlock, tags, slots, values, sets, (const i64 *)k, (const float *)v, m, dim, now, (u32)updateOnly, groupSet,
                       groupHead, groupCap, (const i32 *)next, (const u32 *)keySet, occupied, (const u32 *)sketch, sketchLog2);
            free(k), free(v);
        }
        for (u32 g = 0; g < groupCap; ++g) CHECK(groupSet[g] == 0xffffffffu && groupHead[g] == -1, "group entry %u not returned to empty", g);
    }
};

static void testDynamic(std::mt19937_64 &rng, u32 sets, u32 dim, u32 chunk, int kernel = 0, size_t maxQuery = 200, bool admission = false,
                        int steps = 10) {
    RefDynamic ref(sets, dim, admission);
    EmuDynamic gpu(sets, dim, chunk, admission);
    size_t agings = 0;
    std::vector<i64> universe;
    for (u32 i = 0; i < sets * 64 * 3 + 50; ++i) universe.push_back((i64)rng() >> (rng() % 40));
    universe.push_back(INT64_MIN), universe.push_back(INT64_MAX), universe.push_back(-1), universe.push_back(0);
    std::sort(universe.begin(), universe.end());
    universe.erase(std::unique(universe.begin(), universe.end()), universe.end());
    int version = 0;
    for (int step = 0; step < steps; ++step) {
        ++version;
        int op = step == 0 ? 0 : (int)(rng() % 3);
        if (op == 0 || op == 2) {
            size_t n = 1 + rng() % (admission ? sets * 64 * 3 : (step == 1 ? 400 : 150));
            std::vector<i64> batch;
            // With admission, draw skewed (a few keys far more often) so that estimates differ.
            for (size_t i = 0; i < n; ++i) batch.push_back(universe[admission ? (size_t)(universe.size() * std::pow((rng() % 10000) / 10000.0, 3)) : rng() % universe.size()]);
            std::vector<float> vals(n * dim);
            for (size_t i = 0; i < n; ++i)
                for (u32 e = 0; e < dim; ++e) vals[i * dim + e] = valueOf(batch[i], version, e);
            u64 before = admission ? ref.sketch->additions : 0;
            ref.write(batch, vals, op == 2);
            if (admission) agings += ref.sketch->additions < before;
            gpu.write(batch, vals, op == 2);
        } else {
            std::set<i64> seen;
            std::vector<i64> batch;
            size_t n = 1 + rng() % maxQuery;
            for (size_t i = 0; i < n; ++i) {
                i64 k = universe[rng() % universe.size()];
                if (seen.insert(k).second) batch.push_back(k);
            }
            std::vector<float> a, b;
            auto ma = ref.query(batch, a);
            auto mb = gpu.query(batch, b, nullptr, kernel, kernel == 0 || step != 5);
            CHECK(ma == mb, "dynamic sets %u dim %u kernel %d step %d: misses differ (%zu vs %zu)", sets, dim, kernel, step, ma.size(), mb.size());
            if (ma == mb && (kernel == 0 || step != 5)) {
                std::set<int> missed(ma.begin(), ma.end());
                for (size_t i = 0; i < batch.size(); ++i)
                    if (!missed.count((int)i)) CHECK(std::memcmp(&a[i * dim], &b[i * dim], dim * 4) == 0, "dynamic hit vector of key %lld differs", (long long)batch[i]);
            }
        }
        // Whole-state comparison.
        bool same = true;
        for (u32 s = 0; s < sets * 64; ++s) {
            if (ref.tags[s] != gpu.tags[s] || (ref.tags[s] && (ref.keys[s] != gpu.slots[s].key || ref.stamps[s] != gpu.slots[s].stamp))) same = false;
            if (ref.tags[s] && std::memcmp(&ref.values[(size_t)s * dim], &gpu.values[(size_t)s * dim], dim * 4) != 0) same = false;
        }
        CHECK(same, "dynamic sets %u dim %u kernel %d step %d (op %d): cache state differs from the reference", sets, dim, kernel, step, op);
        size_t used = 0;
        for (u32 s = 0; s < sets * 64; ++s) used += ref.tags[s] != 0;
        CHECK(*gpu.occupied == used, "occupied %llu vs %zu", *gpu.occupied, used);
        if (admission) {
            CHECK(std::memcmp(ref.sketch->words.data(), gpu.sketch, gpu.sketchWords * 4) == 0, "admission sets %u dim %u kernel %d step %d: sketch differs", sets, dim, kernel, step);
            CHECK(ref.sketch->additions == *gpu.additions, "admission step %d: additions %llu vs %llu", step, (unsigned long long)ref.sketch->additions, *gpu.additions);
        }
        if (!same) return;
    }
    if (admission) {
        CHECK(ref.refused > 0, "admission sets %u: no key was refused (the test exercises nothing)", sets);
        CHECK(agings > 0, "admission sets %u: the sketch never aged", sets);
        std::printf("  admission sets %u dim %u kernel %d: %zu keys refused, %zu agings\n", sets, dim, kernel, ref.refused, agings);
    }
}

// Keys that share a set and a tag: the pipelined query reads two candidates at once and walks the rest.
static void testDynamicCollisions(std::mt19937_64 &rng, u32 dim, int kernel) {
    const u32 sets = 2;
    RefDynamic ref(sets, dim);
    EmuDynamic gpu(sets, dim, 1000);
    // Group random keys by (set, tag); take the most crowded tag of set 0 (≥ 6 keys) and fill with others.
    std::map<std::pair<u32, u8>, std::vector<i64>> byTag;
    for (int i = 0; i < 20000; ++i) {
        i64 k = (i64)rng();
        u32 set;
        u8 tag;
        ref.place(k, set, tag);
        byTag[{set, tag}].push_back(k);
    }
    std::vector<i64> crowded;
    for (auto &e : byTag)
        if (e.first.first == 0 && e.second.size() > crowded.size()) crowded = e.second;
    CHECK(crowded.size() >= 6, "collision test found only %zu keys with one tag", crowded.size());
    crowded.resize(std::min<size_t>(crowded.size(), 12));
    std::vector<i64> fill;
    for (auto &e : byTag)
        for (i64 k : e.second)
            if (fill.size() < 120 && e.second != crowded && std::find(crowded.begin(), crowded.end(), k) == crowded.end()) fill.push_back(k);
    // Insert fillers and crowded keys interleaved so that the crowded ones sit at scattered ways.
    std::vector<i64> order;
    for (size_t i = 0; i < std::max(fill.size(), crowded.size()); ++i) {
        if (i < fill.size()) order.push_back(fill[i]);
        if (i % 7 == 0 && i / 7 < crowded.size()) order.push_back(crowded[i / 7]);
    }
    for (size_t i = order.size(); i-- > 0;)
        if (std::count(order.begin(), order.end(), order[i]) > 1) order.erase(order.begin() + i);
    std::vector<float> vals(order.size() * dim);
    for (size_t i = 0; i < order.size(); ++i)
        for (u32 e = 0; e < dim; ++e) vals[i * dim + e] = valueOf(order[i], 1, e);
    ref.write(order, vals, false);
    gpu.write(order, vals, false);
    // Query the crowded keys (some cached, the last ones maybe not) plus an uncached key with the same tag.
    for (int round = 0; round < 3; ++round) {
        std::vector<i64> q = crowded;
        std::shuffle(q.begin(), q.end(), rng);
        for (size_t i = 0; i < 40 && i < order.size(); ++i) q.push_back(order[rng() % order.size()]);
        std::sort(q.begin(), q.end());
        q.erase(std::unique(q.begin(), q.end()), q.end());
        std::shuffle(q.begin(), q.end(), rng);
        std::vector<float> a, b;
        auto ma = ref.query(q, a);
        auto mb = gpu.query(q, b, nullptr, kernel);
        CHECK(ma == mb, "collisions dim %u kernel %d: misses differ", dim, kernel);
        for (size_t i = 0; i < q.size(); ++i)
            if (std::find(ma.begin(), ma.end(), (int)i) == ma.end())
                CHECK(std::memcmp(&a[i * dim], &b[i * dim], dim * 4) == 0, "collisions: vector of key %lld differs", (long long)q[i]);
        bool same = true;
        for (u32 s = 0; s < sets * 64; ++s)
            if (ref.tags[s] != gpu.tags[s] || (ref.tags[s] && (ref.keys[s] != gpu.slots[s].key || ref.stamps[s] != gpu.slots[s].stamp))) same = false;
        CHECK(same, "collisions dim %u kernel %d round %d: cache state differs", dim, kernel, round);
    }
    size_t cachedCrowded = 0;
    for (i64 k : crowded) {
        u32 set;
        u8 tag;
        ref.place(k, set, tag);
        cachedCrowded += ref.slot(k, set, tag) >= 0;
    }
    CHECK(cachedCrowded >= 4, "collision test cached only %zu keys of one tag", cachedCrowded);
}

// ---- Dedup -------------------------------------------------------------------------------------------------------
static void testDedup(std::mt19937_64 &rng) {
    const u32 maxKeys = 3000;
    u32 cap = 1, log = 0;
    while (cap < 2 * maxKeys) cap <<= 1, ++log;
    u32 shift = 64 - log;
    u64 *table = dalloc<u64>(cap);
    for (u32 i = 0; i < cap; ++i) table[i] = DEDUP_EMPTY;
    i32 *slotIndex = dalloc<i32>(cap + 1);
    u32 *sentinel = dalloc<u32>(1), *count = dalloc<u32>(1);
    i64 *keys = dalloc<i64>(maxKeys), *unique = dalloc<i64>(maxKeys);
    u32 *uniquePos = dalloc<u32>(maxKeys);
    i32 *inverse = dalloc<i32>(maxKeys);
    for (int round = 0; round < 6; ++round) {
        u32 n = round == 0 ? 1 : 1 + (u32)(rng() % maxKeys);
        std::vector<i64> hot;
        for (int i = 0; i < 50; ++i) hot.push_back((i64)rng());
        for (u32 i = 0; i < n; ++i) keys[i] = rng() % 3 == 0 ? (i64)rng() : hot[rng() % hot.size()];
        if (n > 10) keys[3] = keys[9] = (i64)DEDUP_EMPTY;
        *count = 0;
        emu_launch(dedup_insert, gridFor(n), kBlock, (const i64 *)keys, n, table, slotIndex, shift, sentinel, count, unique, uniquePos, (u32 *)inverse);
        emu_launch(dedup_resolve, gridFor(n), kBlock, (const u32 *)inverse, n, (const i32 *)slotIndex, inverse);
        std::set<i64> distinct(keys, keys + n);
        std::set<i64> got(unique, unique + *count);
        CHECK(*count == distinct.size() && got == distinct, "dedup round %d: %u distinct from the kernel, %zu expected", round, *count, distinct.size());
        for (u32 i = 0; i < n; ++i) CHECK(inverse[i] >= 0 && (u32)inverse[i] < *count && unique[inverse[i]] == keys[i], "dedup inverse[%u] wrong", i);
        emu_launch(dedup_clear, gridFor(n), kBlock, (const u32 *)uniquePos, (const u32 *)count, n, table, shift, sentinel);
        bool clean = *sentinel == 0;
        for (u32 i = 0; i < cap; ++i) clean = clean && table[i] == DEDUP_EMPTY;
        CHECK(clean, "dedup round %d: table not empty after clear", round);
    }
}

// ---- copy_rows -------------------------------------------------------------------------------------------------
static void testCopyRows(std::mt19937_64 &rng) {
    for (u32 dim : {1u, 2u, 3u, 4u, 6u, 16u, 33u, 128u, 132u, 260u}) {
        u32 rows = 500, n = 700;
        float *src = dalloc<float>((size_t)rows * dim), *high = dalloc<float>((size_t)rows * dim), *dst = dalloc<float>((size_t)n * dim);
        for (size_t i = 0; i < (size_t)rows * dim; ++i) src[i] = (float)i, high[i] = -(float)i - 1;
        i32 *srcIndex = dalloc<i32>(n), *srcIndex2 = dalloc<i32>(rows), *dstIndex = dalloc<i32>(n);
        for (u32 j = 0; j < n; ++j) srcIndex[j] = (i32)(rng() % rows), dstIndex[j] = (i32)j;
        std::shuffle(dstIndex, dstIndex + n, rng);
        for (u32 r = 0; r < rows; ++r) srcIndex2[r] = rng() % 5 == 0 ? -1 : (i32)(rng() % (2 * rows));
        u32 split = rows;
        int w = widthFor(dim);
        auto kernel = w == 4 ? copy_rows_v4 : (w == 2 ? copy_rows_v2 : copy_rows_v1);
        emu_launch(kernel, gridFor(n), kBlock, dst, (const i32 *)dstIndex, (const float *)src, (const float *)high, (i64)split, (const i32 *)srcIndex,
                   (const i32 *)srcIndex2, n, (const u32 *)nullptr, dim, log2Lanes(dim / w), 7.5f, 1u);
        bool ok = true;
        for (u32 j = 0; j < n && ok; ++j) {
            i64 r = srcIndex2[srcIndex[j]];
            for (u32 e = 0; e < dim; ++e) {
                float expect = r < 0 ? 7.5f : (r < split ? src[r * dim + e] : high[(r - split) * dim + e]);
                if (dst[(size_t)dstIndex[j] * dim + e] != expect) ok = false;
            }
        }
        CHECK(ok, "copy_rows dim %u (width %d) wrong", dim, w);
        free(src), free(high), free(dst), free(srcIndex), free(srcIndex2), free(dstIndex);
    }
}

// ---- Static table -----------------------------------------------------------------------------------------------
static void testStatic(std::mt19937_64 &rng, u32 capacity, u32 dim, double deviceFraction) {
    u32 slots = 16;
    while (slots < 2 * capacity) slots <<= 1;
    u32 mask = slots - 1;
    StEntry *index = dalloc<StEntry>(slots);
    i64 *rowKeys = dalloc<i64>(capacity);
    i64 deviceRows = (i64)(deviceFraction * capacity);
    float *dv = dalloc<float>((size_t)std::max<i64>(1, deviceRows) * dim), *hv = dalloc<float>((size_t)(capacity - deviceRows + 1) * dim);
    std::map<i64, std::vector<float>> ref;
    std::vector<i64> refOrder;
    u32 rowCount = 0;
    int w = widthFor(dim);
    std::vector<i64> universe;
    for (u32 i = 0; i < capacity * 2; ++i) universe.push_back((i64)rng());
    for (int round = 0; round < 6; ++round) {
        bool addNew = round % 3 != 2;
        u32 m = 1 + (u32)(rng() % (capacity / 2 + 5));
        std::vector<i64> batch;
        for (u32 i = 0; i < m; ++i) batch.push_back(universe[rng() % universe.size()]);
        std::vector<float> vals((size_t)m * dim);
        for (u32 i = 0; i < m; ++i)
            for (u32 e = 0; e < dim; ++e) vals[(size_t)i * dim + e] = valueOf(batch[i], round, e);
        // Reference (the CPU StaticCache).
        for (u32 i = 0; i < m; ++i) {
            auto it = ref.find(batch[i]);
            if (it != ref.end()) it->second.assign(&vals[(size_t)i * dim], &vals[(size_t)(i + 1) * dim]);
            else if (addNew && ref.size() < capacity) {
                ref[batch[i]].assign(&vals[(size_t)i * dim], &vals[(size_t)(i + 1) * dim]);
                refOrder.push_back(batch[i]);
            }
        }
        // GPU path, planned as CUDAStaticCache.swift does.
        i64 *k = dalloc<i64>(m);
        std::copy(batch.begin(), batch.end(), k);
        i32 *found = dalloc<i32>(m);
        emu_launch(st_find, gridFor(m), kBlock, (const StEntry *)index, mask, (const i64 *)k, m, found);
        std::unordered_map<i64, i32> newRows;
        std::vector<i64> newKeys;
        std::map<i32, i32> lastWriter;
        std::vector<i32> order;
        for (u32 i = 0; i < m; ++i) {
            i32 row = found[i];
            if (row < 0) {
                auto it = newRows.find(batch[i]);
                if (it != newRows.end()) row = it->second;
                else if (addNew && rowCount + newKeys.size() < capacity) {
                    row = (i32)(rowCount + newKeys.size());
                    newRows[batch[i]] = row;
                    newKeys.push_back(batch[i]);
                } else continue;
            }
            if (!lastWriter.count(row)) order.push_back(row);
            lastWriter[row] = (i32)i;
        }
        if (!newKeys.empty()) {
            i64 *nk = dalloc<i64>(newKeys.size());
            i32 *nr = dalloc<i32>(newKeys.size());
            for (size_t j = 0; j < newKeys.size(); ++j) nk[j] = newKeys[j], nr[j] = (i32)(rowCount + j);
            emu_launch(st_insert, gridFor(newKeys.size()), kBlock, index, mask, (const i64 *)nk, (const i32 *)nr, (u32)newKeys.size(), rowKeys);
            free(nk), free(nr);
        }
        if (!order.empty()) {
            i32 *wr = dalloc<i32>(order.size()), *ws = dalloc<i32>(order.size());
            float *v = dalloc<float>((size_t)m * dim);
            std::copy(vals.begin(), vals.end(), v);
            for (size_t j = 0; j < order.size(); ++j) wr[j] = order[j], ws[j] = lastWriter[order[j]];
            auto kernel = w == 4 ? st_write_rows_v4 : (w == 2 ? st_write_rows_v2 : st_write_rows_v1);
            emu_launch(kernel, gridFor(order.size()), kBlock, dv, hv, deviceRows, (const i32 *)wr, (const i32 *)ws, (const float *)v, (u32)order.size(), dim,
                       log2Lanes(dim / w));
            free(wr), free(ws), free(v);
        }
        rowCount += (u32)newKeys.size();
        free(k), free(found);
        // Query everything.
        u32 q = (u32)universe.size();
        i64 *qk = dalloc<i64>(q);
        std::copy(universe.begin(), universe.end(), qk);
        float *out = dalloc<float>((size_t)q * dim);
        u8 *flags = dalloc<u8>(q);
        u32 *misses = dalloc<u32>(1);
        i32 *missing = dalloc<i32>(q);
        auto qkernel = w == 4 ? st_query_v4 : (w == 2 ? st_query_v2 : st_query_v1);
        emu_launch(qkernel, gridFor(q), kBlock, (const StEntry *)index, mask, dv, hv, deviceRows, (const i64 *)qk, q, (const u32 *)nullptr, out, dim, log2Lanes(dim / w),
                   missing, (i64 *)nullptr, misses, flags, (i32 *)nullptr);
        u32 expectedMisses = 0;
        bool ok = true;
        for (u32 i = 0; i < q; ++i) {
            auto it = ref.find(universe[i]);
            if (it == ref.end()) {
                ++expectedMisses;
                ok = ok && flags[i] == 0;
            } else {
                ok = ok && flags[i] == 1 && std::memcmp(it->second.data(), &out[(size_t)i * dim], dim * 4) == 0;
            }
        }
        CHECK(ok && *misses == expectedMisses, "static capacity %u dim %u round %d: query differs (misses %u vs %u)", capacity, dim, round, *misses, expectedMisses);
        CHECK(rowCount == ref.size() && std::equal(refOrder.begin(), refOrder.end(), rowKeys), "static row keys differ");
        free(qk), free(out), free(flags), free(misses), free(missing);
    }
}

// ---- Bench generators vs their host twins -----------------------------------------------------------------------
static void testBench() {
    const u32 rows = 1000;
    double *cdf = dalloc<double>(rows);
    double sum = 0;
    for (u32 i = 0; i < rows; ++i) sum += 1.0 / std::pow(i + 1.0, 1.05), cdf[i] = sum;
    for (u32 i = 0; i < rows; ++i) cdf[i] /= sum;
    cdf[rows - 1] = 1;
    const u32 n = 2000;
    i64 *keys = dalloc<i64>(n);
    emu_launch(bench_zipf_keys, gridFor(n), kBlock, (const double *)cdf, rows, (u64)42, (u64)7, n, keys);
    bool ok = true;
    for (u32 i = 0; i < n; ++i) {
        u64 h = bench_mix(42 + (7 + i + 1ull) * 0x9E3779B97F4A7C15ull);
        double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
        u32 r = (u32)(std::lower_bound(cdf, cdf + rows, u) - cdf);
        ok = ok && keys[i] == (i64)r;
    }
    CHECK(ok, "bench_zipf_keys differs from the host formula");
    float *a = dalloc<float>(50 * 7), *b = dalloc<float>(50 * 7);
    i64 *k = dalloc<i64>(50);
    for (int i = 0; i < 50; ++i) k[i] = 10 + i;
    emu_launch(bench_fill_values, 1, kBlock, a, (u64)10, 50u, 7u, (u64)5);
    emu_launch(bench_key_values, 1, kBlock, (const i64 *)k, 50u, (const u32 *)nullptr, 7u, (u64)5, b);
    CHECK(std::memcmp(a, b, 50 * 7 * 4) == 0, "bench_key_values differs from bench_fill_values");
}

// fuse_keys against the Swift FusedKeySpace rule: tag | low bits when the key fits keyBits bits (two's
// complement for int64, always for uint32), else the absent key.
static void testFuseKeys(std::mt19937_64 &rng) {
    const u32 n = 700;
    for (int memberCount : {2, 3, 26}) {
        int memberBits = 0;
        while ((1 << memberBits) <= memberCount) ++memberBits;  // room for memberCount itself (the absent tag)
        for (int int32Keys : {0, 1}) {
            const u32 keyBits = int32Keys ? 32u : 64u - (u32)memberBits;
            const u64 absent = (u64)memberCount << keyBits;
            const int member = (int)(rng() % memberCount);
            const u64 tag = (u64)member << keyBits;
            i64 *k64 = dalloc<i64>(n);
            u32 *k32 = dalloc<u32>(n);
            i64 *out = dalloc<i64>(n);
            for (u32 i = 0; i < n; ++i) {
                const i64 edge[] = {0, -1, 1, INT64_MIN, INT64_MAX, (i64)1 << (keyBits - 1), -((i64)1 << (keyBits - 1)), ((i64)1 << (keyBits - 1)) - 1};
                k64[i] = i < 8 ? edge[i] : (i64)(rng() >> (rng() % 64));
                if (rng() % 2) k64[i] = -k64[i];
                k32[i] = (u32)rng();
            }
            emu_launch(fuse_keys, gridFor(n), kBlock, int32Keys ? (const void *)k32 : (const void *)k64, (u32)int32Keys, n, tag, keyBits, absent, out);
            for (u32 i = 0; i < n; ++i) {
                i64 expected;
                if (int32Keys) {
                    expected = (i64)(tag | (u64)k32[i]);
                } else {
                    const i64 lo = INT64_MIN >> memberBits, hi = INT64_MAX >> memberBits;
                    const i64 key = k64[i];
                    expected = key >= lo && key <= hi ? (i64)(tag | ((u64)key & (~0ull >> memberBits))) : (i64)absent;
                }
                CHECK(out[i] == expected, "fuse_keys members %d int32 %d key %lld: got %llx expected %llx", memberCount, int32Keys,
                      (long long)(int32Keys ? (i64)k32[i] : k64[i]), (unsigned long long)out[i], (unsigned long long)expected);
            }
            std::free(k64);
            std::free(k32);
            std::free(out);
        }
    }
}

int main() {
    std::mt19937_64 rng(12345);
    testBench();
    std::printf("bench generators checked\n");
    testCopyRows(rng);
    std::printf("copy_rows checked\n");
    testDedup(rng);
    std::printf("dedup checked\n");
    testFuseKeys(rng);
    std::printf("fuse_keys checked\n");
    testDynamic(rng, 1, 3, 100);    // one set; groups larger than DYN_GROUP_CAP (walk path) and chunking
    testDynamic(rng, 3, 4, 1000);
    testDynamic(rng, 17, 33, 1000);
    testDynamic(rng, 2, 128, 64);
    std::printf("dynamic cache checked\n");
    // The pipelined query (row widths 16, 32, 64, 128; plain, streaming and narrow) against the same reference,
    // with batches of several warps per grid-stride pass so that probes overlap copies.
    for (int kernel : {1, 2}) {
        testDynamic(rng, 3, 16, 1000, kernel, 900);
        testDynamic(rng, 17, 32, 1000, kernel, 900);
        testDynamic(rng, 5, 64, 1000, kernel, 700);
        testDynamic(rng, 9, 128, 1000, kernel, 700);
    }
    testDynamic(rng, 9, 128, 1000, 3, 700);
    testDynamic(rng, 1, 16, 100, 2, 300);
    // TinyLFU admission: the sketch (bit for bit), the counted keys, the aging and every decision.
    testDynamic(rng, 1, 3, 100, 0, 200, true, 30);
    testDynamic(rng, 3, 4, 1000, 0, 200, true, 30);
    testDynamic(rng, 5, 64, 1000, 1, 700, true, 30);
    testDynamic(rng, 2, 128, 64, 2, 300, true, 30);
    testDynamic(rng, 9, 128, 1000, 3, 700, true, 36);
    for (int kernel : {0, 2, 3}) testDynamicCollisions(rng, 128, kernel);
    testDynamicCollisions(rng, 16, 1);
    std::printf("pipelined dynamic query checked\n");
    testStatic(rng, 300, 5, 1.0);
    testStatic(rng, 300, 8, 0.3);
    testStatic(rng, 40, 128, 0.5);
    std::printf("static table checked\n");
    std::printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
