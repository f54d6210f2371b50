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

/// Counter `i` (0..<4) of a key in its 64-byte block of the frequency sketch: byte `i` of `sel` picks word
/// `4i + (byte & 3)` of the block's 16 words and its nibble `(byte >> 2) & 7`. See FrequencySketch.swift.
static inline uint32_t *hps_sketch_word(uint32_t *block, uint32_t sel, int i, uint32_t *shift) {
  uint32_t b = (sel >> (8 * i)) & 0xffu;
  *shift = ((b >> 2) & 7u) * 4u;
  return block + 4 * i + (b & 3u);
}

/// Adds 1 to each of the key's 4 four-bit counters in `block` (16 words), saturating at 15. Atomic per word
/// (compare-and-swap), so concurrent increments never lose or overflow a count; saturating additions commute,
/// so the result does not depend on their order.
static inline void hps_sketch_increment(uint32_t *block, uint32_t sel) {
  for (int i = 0; i < 4; i++) {
    uint32_t shift;
    uint32_t *w = hps_sketch_word(block, sel, i, &shift);
    uint32_t old = __atomic_load_n(w, __ATOMIC_RELAXED);
    while (((old >> shift) & 15u) != 15u) {
      if (__atomic_compare_exchange_n(w, &old, old + (1u << shift), 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
    }
  }
}

/// The smallest of the key's 4 counters in `block` (0...15).
static inline uint32_t hps_sketch_estimate(uint32_t *block, uint32_t sel) {
  uint32_t least = 15u;
  for (int i = 0; i < 4; i++) {
    uint32_t shift;
    uint32_t *w = hps_sketch_word(block, sel, i, &shift);
    uint32_t c = (__atomic_load_n(w, __ATOMIC_RELAXED) >> shift) & 15u;
    if (c < least) least = c;
  }
  return least;
}

/// Halves every four-bit counter of `count` words (atomic per word).
static inline void hps_sketch_halve(uint32_t *words, size_t count) {
  for (size_t i = 0; i < count; i++) {
    uint32_t old = __atomic_load_n(words + i, __ATOMIC_RELAXED);
    while (old != 0 && !__atomic_compare_exchange_n(words + i, &old, (old >> 1) & 0x77777777u, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  }
}

/// Atomically replaces a 64-bit word with `desired` if it holds `expected`; returns whether it did.
static inline int hps_atomic_cas_u64(uint64_t *word, uint64_t expected, uint64_t desired) {
  return __atomic_compare_exchange_n(word, &expected, desired, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

#endif
