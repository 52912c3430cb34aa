/* What cnnlab's C kernels share: 16-lane vectors, loads and stores of 16 channels in bf16 or fp32,
 * and the 2x2 max-pooling rule. Included by maxpool2x2.c and conv1pool.c (build.py hashes this
 * header with them, so editing it rebuilds both).
 *
 * Vectors: GCC/Clang vector extensions, 16 lanes of 32 bits (one AVX-512 register, or several
 * narrower ones: the compiler splits them). Values travel as 32-bit patterns: fp32 bits, or bf16
 * bits << 16 (bf16 is the top half of an fp32, so widening and narrowing are exact here).
 */
#ifndef CNNLAB_VEC16_H
#define CNNLAB_VEC16_H

#include <stdint.h>
#include <string.h>

#define LANES 16
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu __attribute__((vector_size(4 * LANES)));
typedef uint16_t vh __attribute__((vector_size(2 * LANES)));
typedef uint8_t vb __attribute__((vector_size(LANES)));

/* 16 values at element offset i of a bf16 (bf16 = 1) or fp32 array, as 32-bit patterns. */
static inline vi load16(const void *base, long i, int bf16) {
    if (bf16) {
        vh h;
        memcpy(&h, (const uint16_t *)base + i, sizeof h);
        return (vi)(__builtin_convertvector(h, vu) << 16);
    }
    vi v;
    memcpy(&v, (const float *)base + i, sizeof v);
    return v;
}

/* Store 16 patterns at element offset i; for bf16 the low halves must be zero (they are dropped). */
static inline void store16(void *base, long i, vi bits, int bf16) {
    if (bf16) {
        vh h = __builtin_convertvector((vu)bits >> 16, vh);
        memcpy((uint16_t *)base + i, &h, sizeof h);
    } else {
        memcpy((float *)base + i, &bits, sizeof bits);
    }
}

static inline vi load_pos(const uint8_t *p) { vb b; memcpy(&b, p, sizeof b); return __builtin_convertvector(b, vi); }
static inline void store_pos(uint8_t *p, vi pos) { vb b = __builtin_convertvector(pos, vb); memcpy(p, &b, sizeof b); }

/* A 2x2 window's maximum (bits) and its position 0-3 for 16 channels, by torch's rule: the window
 * is scanned (0,0), (0,1), (1,0), (1,1) and a value replaces the running maximum when it is greater
 * or NaN, so the first maximum wins and the last NaN wins. */
static inline void window_max16(vi a, vi b, vi d, vi e, vi *max_bits, vi *pos) {
    vf fa = (vf)a, fb = (vf)b, fd = (vf)d, fe = (vf)e;
    vi top = (fb > fa) | (fb != fb);           /* -1 where (0,1) beats (0,0) */
    vi m1 = (top & b) | (~top & a);
    vi bottom = (fe > fd) | (fe != fe);        /* -1 where (1,1) beats (1,0) */
    vi m2 = (bottom & e) | (~bottom & d);
    vf f1 = (vf)m1, f2 = (vf)m2;
    vi lower = (f2 > f1) | (f2 != f2);         /* -1 where the bottom row's winner wins */
    *max_bits = (lower & m2) | (~lower & m1);
    *pos = (lower & (2 - bottom)) | (~lower & -top);  /* 0, 1, 2 or 3 */
}

/* ReLU on a window maximum, torch.relu's bits (negatives -> +0.0; -0.0 and NaN stay), and position
 * 4 where the output is <= 0 (false for NaN): torch's threshold backward passes no gradient there. */
static inline void relu16(vi *max_bits, vi *pos) {
    *max_bits &= ~((vf)*max_bits < 0.0f);
    vi dead = ((vf)*max_bits <= 0.0f);
    *pos = (dead & 4) | (~dead & *pos);
}

/* Start of the channel block after c: c + 16, or C - 16 for a last block that would run past C.
 * That block overlaps the one before and rewrites a few channels with the same values (every
 * output is a function of its own channel alone) instead of falling back to slow scalar code;
 * so C must be at least 16. */
static inline long next_block(long c, long C) { return c + 2 * LANES <= C || c + LANES >= C ? c + LANES : C - LANES; }

#endif
