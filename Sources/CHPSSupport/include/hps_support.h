#ifndef HPS_SUPPORT_H
#define HPS_SUPPORT_H

#include <stdint.h>
#include <stddef.h>

/// Hints the CPU to bring the cache line holding `p` in for reading.
static inline void hps_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Hints the CPU to bring the cache line holding `p` in for writing.
static inline void hps_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/// Copies `n` bytes (a vector row) with inline 32/16/4-byte moves: rows are short (tens to hundreds of
/// bytes), where a call to memcpy costs as much as the copy.
static inline void hps_copy(void *dst, const void *src, size_t n) {
  char *d = (char *)dst;
  const char *s = (const char *)src;
  while (n >= 32) { __builtin_memcpy(d, s, 32); d += 32; s += 32; n -= 32; }
  if (n >= 16) { __builtin_memcpy(d, s, 16); d += 16; s += 16; n -= 16; }
  if (n >= 8) { __builtin_memcpy(d, s, 8); d += 8; s += 8; n -= 8; }
  while (n >= 4) { __builtin_memcpy(d, s, 4); d += 4; s += 4; n -= 4; }
  while (n > 0) { *d++ = *s++; n--; }
}

/// Takes a spin lock held in a 32-bit word (0 = free, 1 = held).
static inline void hps_spin_lock(uint32_t *word) {
  for (;;) {
    uint32_t expected = 0;
    if (__atomic_compare_exchange_n(word, &expected, 1u, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    while (__atomic_load_n(word, __ATOMIC_RELAXED) != 0) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
    }
  }
}

/// Releases a spin lock taken with `hps_spin_lock`.
static inline void hps_spin_unlock(uint32_t *word) { __atomic_store_n(word, 0u, __ATOMIC_RELEASE); }

/// Atomically adds `value` to a 64-bit word and returns the new value.
static inline uint64_t hps_atomic_add_u64(uint64_t *word, uint64_t value) {
  return __atomic_add_fetch(word, value, __ATOMIC_RELAXED);
}

/// Atomically loads a 64-bit word.
static inline uint64_t hps_atomic_load_u64(const uint64_t *word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }

/// Atomically adds to a 32-bit word (relaxed) and returns the new value.
static inline uint32_t hps_atomic_add_u32(uint32_t *word, uint32_t value) {
  return __atomic_add_fetch(word, value, __ATOMIC_RELAXED);
}

/// Atomically loads a 32-bit word (relaxed).
static inline uint32_t hps_atomic_load_u32(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }

/// Atomically stores a 32-bit word (relaxed).
static inline void hps_atomic_store_u32(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELAXED); }

/// Atomically stores a byte (relaxed): for bytes that other threads read without the writer's lock.
static inline void hps_atomic_store_u8(uint8_t *byte, uint8_t value) { __atomic_store_n(byte, value, __ATOMIC_RELAXED); }

#endif
