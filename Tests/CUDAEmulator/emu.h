// A small CUDA emulator for checking the HPS kernels' logic on a machine without a GPU.
//
// The kernels (Sources/HPSCUDA/Kernels/*.cu) compile as plain C++ against this header: every CUDA thread is a
// host thread, blocks run one after another (so `__shared__` can be a static), and warp intrinsics are
// implemented with a 32-thread barrier per warp — which also makes a kernel that calls an intrinsic from
// diverged lanes hang (the emulator reports a timeout) instead of silently working. Atomics are real atomics,
// so races between threads are real races. It says nothing about speed or memory ordering subtleties of the
// hardware; it checks indexing, algorithms and convergence.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct float4 {
    float x, y, z, w;
};
struct float2 {
    float x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

// A reusable barrier for the 32 threads of a warp.
struct EmuBarrier {
    std::mutex m;
    std::condition_variable cv;
    int count = 0, generation = 0;
    int size;
    explicit EmuBarrier(int n) : size(n) {}
    void wait() {
        std::unique_lock<std::mutex> lock(m);
        int gen = generation;
        if (++count == size) {
            count = 0;
            ++generation;
            cv.notify_all();
            return;
        }
        if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return gen != generation; })) {
            std::fprintf(stderr, "EMULATOR: warp barrier timeout (diverged warp intrinsic?)\n");
            std::abort();
        }
    }
};

struct EmuWarp {
    EmuBarrier barrier{32};
    unsigned long long values[32];
};
extern thread_local EmuWarp *emuWarp;

inline unsigned emu_lane() { return threadIdx.x & 31u; }

template <typename T> inline T __shfl_sync(unsigned, T v, int src) {
    static_assert(sizeof(T) <= 8, "shfl of at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    emuWarp->values[emu_lane()] = bits;
    emuWarp->barrier.wait();
    unsigned long long got = emuWarp->values[src & 31];
    emuWarp->barrier.wait();
    T r;
    std::memcpy(&r, &got, sizeof(T));
    return r;
}
template <typename T> inline T __shfl_xor_sync(unsigned m, T v, int laneMask) {
    static_assert(sizeof(T) <= 8, "shfl of at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    emuWarp->values[emu_lane()] = bits;
    emuWarp->barrier.wait();
    unsigned long long got = emuWarp->values[(emu_lane() ^ (unsigned)laneMask) & 31];
    emuWarp->barrier.wait();
    T r;
    std::memcpy(&r, &got, sizeof(T));
    return r;
}
inline unsigned __ballot_sync(unsigned, bool pred) {
    emuWarp->values[emu_lane()] = pred ? 1 : 0;
    emuWarp->barrier.wait();
    unsigned mask = 0;
    for (int i = 0; i < 32; ++i) mask |= (emuWarp->values[i] ? 1u : 0u) << i;
    emuWarp->barrier.wait();
    return mask;
}
inline void __syncwarp() { emuWarp->barrier.wait(); }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __vcmpeq4(unsigned a, unsigned b) {
    unsigned r = 0;
    for (int i = 0; i < 4; ++i)
        if (((a >> (8 * i)) & 0xff) == ((b >> (8 * i)) & 0xff)) r |= 0xffu << (8 * i);
    return r;
}
using std::max;
using std::min;

template <typename T> inline T __ldcg(const T *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
template <typename T> inline void __stcs(T *p, T v) { *p = v; }
template <typename T> inline T __ldcs(const T *p) { return *p; }

inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicCAS(unsigned *p, unsigned expected, unsigned desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long expected, unsigned long long desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicExch(unsigned long long *p, unsigned long long v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }

// A pool of host threads that play a block's CUDA threads (reused: creating threads per launch is slow).
struct EmuPool {
    std::vector<std::thread> threads;
    std::mutex m;
    std::condition_variable start, finished;
    std::function<void(unsigned)> job;
    unsigned generation = 0, remaining = 0, size = 0;
    bool stop = false;
    ~EmuPool() {
        {
            std::lock_guard<std::mutex> lock(m);
            stop = true;
        }
        start.notify_all();
        for (auto &t : threads) t.join();
    }
    void loop(unsigned id) {
        unsigned seen = 0;
        for (;;) {
            std::function<void(unsigned)> work;
            {
                std::unique_lock<std::mutex> lock(m);
                start.wait(lock, [&] { return stop || generation != seen; });
                if (stop) return;
                seen = generation;
                if (id >= size) continue;
                work = job;
            }
            work(id);
            std::lock_guard<std::mutex> lock(m);
            if (--remaining == 0) finished.notify_all();
        }
    }
    void run(unsigned n, std::function<void(unsigned)> work) {
        while (threads.size() < n) {
            unsigned id = (unsigned)threads.size();
            threads.emplace_back([this, id] { loop(id); });
        }
        {
            std::lock_guard<std::mutex> lock(m);
            job = std::move(work);
            size = n;
            remaining = n;
            ++generation;
        }
        start.notify_all();
        std::unique_lock<std::mutex> lock(m);
        finished.wait(lock, [&] { return remaining == 0; });
    }
};
extern EmuPool emuPool;

// Runs kernel(args...) on grid × block threads, one block at a time.
template <typename... Params, typename... Args>
void emu_launch(void (*kernel)(Params...), unsigned grid, unsigned block, Args... args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        std::vector<EmuWarp> warps((block + 31) / 32);
        emuPool.run(block, [&, b](unsigned t) {
            blockIdx = {b, 1, 1};
            threadIdx = {t, 1, 1};
            emuWarp = &warps[t / 32];
            kernel(args...);
        });
    }
}

#define EMU_DEFINE_GLOBALS                                                                                       \
    thread_local dim3 threadIdx, blockIdx;                                                                        \
    dim3 blockDim, gridDim;                                                                                       \
    thread_local EmuWarp *emuWarp;                                                                                \
    EmuPool emuPool;
