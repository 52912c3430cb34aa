/* 2x2 max pooling with stride 2 on channels-last (NHWC) CPU tensors, bf16 and fp32, forward and
 * backward; loaded by cnnlab/native/maxpool2x2.py through ctypes.
 *
 * Why: torch's CPU kernel stores each window's argmax as an int64 (8 bytes per output value, as
 * much memory as the bf16 input itself) and its backward zero-fills the whole input gradient before
 * scattering into it. For non-overlapping 2x2 windows every input pixel belongs to exactly one
 * window, so the argmax fits in a uint8 (0-3, window order) and the backward writes each gradient
 * pixel once: either the output's gradient or zero. Measured on the 2-core AMD EPYC, (128, 16, 28,
 * 28) bf16: forward + backward 0.23 ms against torch's 0.9-1.2 ms (docs/speed.md).
 *
 * Semantics are torch's exactly (tests/test_native_pool.py compares values and gradients bitwise):
 * windows are scanned (0,0), (0,1), (1,0), (1,1); a value replaces the running maximum when it is
 * greater or NaN, so the first maximum wins and the last NaN wins; with an odd height or width the
 * last row or column belongs to no window (floor mode) and gets a zero gradient. The gradient is
 * written as 0 + g, as torch's zero-fill-then-add gives (-0.0 becomes +0.0).
 *
 * With relu set, the forward returns relu(max) (torch.relu's bits: negatives become +0.0, -0.0 and
 * NaN stay) and marks a window whose output is <= 0 with position 4, so that the backward gives
 * all four pixels zero gradient, as threshold_backward followed by the pooling's backward does.
 * Sequential runs ReLU-then-pooling as pooling-then-ReLU (model.py), so this is one pass instead
 * of three (pooling, ReLU, and the ReLU's backward).
 *
 * Vectors: GCC/Clang vector extensions, 16 lanes of 32 bits (one AVX-512 register, or several
 * narrower ones: the compiler splits them), over 16 channels at a time. C must be at least 16;
 * when it is not a multiple of 16 the last block starts at C - 16 and overlaps the one before,
 * which rewrites a few channels with the same values (every output is a function of its own
 * channel alone) instead of falling back to slow scalar code. Layout: x[n][h][w][c], c fastest.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu __attribute__((vector_size(4 * LANES)));
typedef uint16_t vh __attribute__((vector_size(2 * LANES)));
typedef uint8_t vb __attribute__((vector_size(LANES)));

/* ---- 16 channels of one window: values as 32-bit patterns (fp32 bits, or bf16 bits << 16) ---- */

/* The window's maximum (bits) and its position 0-3, torch's scan order and NaN rule. */
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

/* Loads and stores of 16 channels; bf16 <-> 32-bit patterns by shifting (exact both ways here). */
static inline vi load_bf16(const uint16_t *p) {
    vh h;
    memcpy(&h, p, sizeof h);
    return (vi)(__builtin_convertvector(h, vu) << 16);
}
static inline vi load_f32(const float *p) { vi v; memcpy(&v, p, sizeof v); return v; }
static inline void store_bf16(uint16_t *p, vi bits) {
    vh h = __builtin_convertvector((vu)bits >> 16, vh);
    memcpy(p, &h, sizeof h);
}
static inline void store_f32(float *p, vi bits) { memcpy(p, &bits, sizeof bits); }
static inline void store_pos(uint8_t *p, vi pos) { vb b = __builtin_convertvector(pos, vb); memcpy(p, &b, sizeof b); }

/* relu on a window maximum: bits of max(m, 0) with torch's rules, and position 4 where it is <= 0. */
static inline void relu16(vi *max_bits, vi *pos) {
    vf m = (vf)*max_bits;
    *max_bits &= ~(m < 0.0f);                    /* negatives -> +0.0; -0.0 and NaN stay */
    vi dead = ((vf)*max_bits <= 0.0f);           /* false for NaN: its gradient flows */
    *pos = (dead & 4) | (~dead & *pos);
}

/* Start of the channel block after c: c + 16, or C - 16 for a last block that would run past C. */
static inline long next_block(long c, long C) { return c + 2 * LANES <= C || c + LANES >= C ? c + LANES : C - LANES; }

/* ---- forward: y (N, H/2, W/2, C), pos (N, H/2, W/2, C) uint8 or NULL when no gradient is needed;
 * relu: 0 for max pooling, 1 for relu(max pooling); C >= 16 ---- */

void cnnlab_maxpool2x2_fwd_bf16(const uint16_t *x, uint16_t *y, uint8_t *pos, long N, long H, long W, long C,
                                int relu) {
    const long OH = H / 2, OW = W / 2;
    for (long n = 0; n < N; n++)
        for (long oh = 0; oh < OH; oh++)
            for (long ow = 0; ow < OW; ow++) {
                const uint16_t *p00 = x + ((n * H + 2 * oh) * W + 2 * ow) * C, *p01 = p00 + C;
                const uint16_t *p10 = p00 + W * C, *p11 = p10 + C;
                const long o = ((n * OH + oh) * OW + ow) * C;
                for (long c = 0; c < C; c = next_block(c, C)) {
                    vi m, k;
                    window_max16(load_bf16(p00 + c), load_bf16(p01 + c), load_bf16(p10 + c), load_bf16(p11 + c),
                                 &m, &k);
                    if (relu) relu16(&m, &k);
                    store_bf16(y + o + c, m);
                    if (pos) store_pos(pos + o + c, k);
                }
            }
}

void cnnlab_maxpool2x2_fwd_f32(const float *x, float *y, uint8_t *pos, long N, long H, long W, long C, int relu) {
    const long OH = H / 2, OW = W / 2;
    for (long n = 0; n < N; n++)
        for (long oh = 0; oh < OH; oh++)
            for (long ow = 0; ow < OW; ow++) {
                const float *p00 = x + ((n * H + 2 * oh) * W + 2 * ow) * C, *p01 = p00 + C;
                const float *p10 = p00 + W * C, *p11 = p10 + C;
                const long o = ((n * OH + oh) * OW + ow) * C;
                for (long c = 0; c < C; c = next_block(c, C)) {
                    vi m, k;
                    window_max16(load_f32(p00 + c), load_f32(p01 + c), load_f32(p10 + c), load_f32(p11 + c), &m, &k);
                    if (relu) relu16(&m, &k);
                    store_f32(y + o + c, m);
                    if (pos) store_pos(pos + o + c, k);
                }
            }
}

/* ---- backward: gx (N, H, W, C) from g (N, H/2, W/2, C) and pos; every gx element written (once,
 * but for the overlap of a last block); position 4, a window the ReLU closed, matches none of 0-3:
 * all four pixels get zero; C >= 16 ---- */

/* The pixels no window covers (last row / column of an odd size) get zero gradient. */
#define ZERO_UNCOVERED(T)                                                                   \
    for (long n = 0; n < N; n++) {                                                          \
        if (W % 2)                                                                          \
            for (long h = 0; h < 2 * OH; h++) memset(gx + ((n * H + h) * W + W - 1) * C, 0, C * sizeof(T)); \
        if (H % 2) memset(gx + (n * H + H - 1) * W * C, 0, W * C * sizeof(T));             \
    }

/* 16 channels of one window's gradient: v (bits) where pos == k, else +0.0. */
static inline void scatter16(vi v, vi pos, vi *g00, vi *g01, vi *g10, vi *g11) {
    *g00 = v & (pos == 0);
    *g01 = v & (pos == 1);
    *g10 = v & (pos == 2);
    *g11 = v & (pos == 3);
}

static inline vi load_pos(const uint8_t *p) { vb b; memcpy(&b, p, sizeof b); return __builtin_convertvector(b, vi); }
static inline vi plus_zero(vi bits) { vf f = (vf)bits + 0.0f; return (vi)f; }  /* -0.0 -> +0.0, as 0 + g */

void cnnlab_maxpool2x2_bwd_bf16(const uint16_t *g, const uint8_t *pos, uint16_t *gx, long N, long H, long W, long C) {
    const long OH = H / 2, OW = W / 2;
    for (long n = 0; n < N; n++)
        for (long oh = 0; oh < OH; oh++)
            for (long ow = 0; ow < OW; ow++) {
                uint16_t *p00 = gx + ((n * H + 2 * oh) * W + 2 * ow) * C, *p01 = p00 + C;
                uint16_t *p10 = p00 + W * C, *p11 = p10 + C;
                const long o = ((n * OH + oh) * OW + ow) * C;
                for (long c = 0; c < C; c = next_block(c, C)) {
                    vi a, b, d, e;
                    scatter16(plus_zero(load_bf16(g + o + c)), load_pos(pos + o + c), &a, &b, &d, &e);
                    store_bf16(p00 + c, a);
                    store_bf16(p01 + c, b);
                    store_bf16(p10 + c, d);
                    store_bf16(p11 + c, e);
                }
            }
    ZERO_UNCOVERED(uint16_t)
}

void cnnlab_maxpool2x2_bwd_f32(const float *g, const uint8_t *pos, float *gx, long N, long H, long W, long C) {
    const long OH = H / 2, OW = W / 2;
    for (long n = 0; n < N; n++)
        for (long oh = 0; oh < OH; oh++)
            for (long ow = 0; ow < OW; ow++) {
                float *p00 = gx + ((n * H + 2 * oh) * W + 2 * ow) * C, *p01 = p00 + C;
                float *p10 = p00 + W * C, *p11 = p10 + C;
                const long o = ((n * OH + oh) * OW + ow) * C;
                for (long c = 0; c < C; c = next_block(c, C)) {
                    vi a, b, d, e;
                    scatter16(plus_zero(load_f32(g + o + c)), load_pos(pos + o + c), &a, &b, &d, &e);
                    store_f32(p00 + c, a);
                    store_f32(p01 + c, b);
                    store_f32(p10 + c, d);
                    store_f32(p11 + c, e);
                }
            }
    ZERO_UNCOVERED(float)
}
