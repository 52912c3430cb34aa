/* A grayscale network's first block in one pass: 3x3 convolution ('same', stride 1) of a
 * one-channel image into C >= 16 maps, optional ReLU, and 2x2 / stride-2 max pooling; forward and
 * the backward for the weights and bias. Loaded by cnnlab/native/conv1pool.py through ctypes.
 *
 * Why: the lecture CNN's first block (Conv2D(16, 3, padding='same', activation='relu'),
 * MaxPool2D(2) on 28x28 images) writes a (N, 28, 28, 16) map that is only pooled down to a
 * quarter, and reads it back in the backward, while its arithmetic is tiny (9 multiply-adds per
 * output value). Computing the four convolution outputs of each pooling window in registers and
 * keeping only their maximum and its position (uint8) never stores the full-size map or its
 * gradient. The input's own gradient is not computed: the caller uses this only for inputs that
 * do not need one (the images).
 *
 * Arithmetic, as torch computes the block under bf16 autocast (bf16 = 1) or in fp32 (bf16 = 0):
 * inputs, weights and bias arrive as floats already rounded to the working precision; each output
 * is the fp32 sum over taps (column by column, top to bottom, fused multiply-adds) plus the bias,
 * rounded to bf16 (nearest even) in bf16 mode; then max pooling with torch's rules (first maximum
 * in window order wins, NaN wins) and ReLU, as in vec16.h (a window whose output is <= 0 gets
 * position 4 and passes no gradient). Agreement with torch's oneDNN path is to the last bit of the
 * sum's rounding, which depends on oneDNN's summation order: tests allow a few last-place
 * differences (tests/test_native_conv_pool.py).
 *
 * Layouts: x (N, H + 2, W + 2), the image with its one-pixel zero padding ('same'); w (9, C),
 * tap t = 3 * row + column; bias (C) or NULL; y and pos (N, H/2, W/2, C), channels fastest;
 * dw (9, C) and dbias (C) as w and bias. C >= 16 (vec16.h's next_block).
 *
 * Threads: images are split among `threads` OpenMP threads, torch's own where build.py compiled
 * with -fopenmp (see maxpool2x2.c). The backward's sums over images are taken in fixed chunks of
 * CHUNK images, then the chunks' sums in order, so its figures do not depend on the thread count.
 */
#include "vec16.h"

/* Round fp32 to bf16, nearest even, kept as a 32-bit pattern with a zero low half (NaN stays NaN). */
static inline vi round_bf16(vf f) {
    vu u = (vu)f;
    vu rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    vi nan = (f != f);
    return (nan & (vi)((u | 0x00400000u) & 0xFFFF0000u)) | (~nan & (vi)rounded);
}

/* The 4x4 input patch under pooling window (oh, ow): image rows 2oh-1 .. 2oh+2, which are rows
 * 2oh .. 2oh+3 of x padded with one zero pixel on every side, (N, H + 2, W + 2). */
static inline void load_patch(const float *x, long n, long oh, long ow, long H, long W, float p[4][4]) {
    const float *row = x + (n * (H + 2) + 2 * oh) * (W + 2) + 2 * ow;
    for (int i = 0; i < 4; i++, row += W + 2) memcpy(p[i], row, 4 * sizeof(float));
}

void cnnlab_conv1pool_fwd(const float *x, const float *w, const float *bias, void *y, uint8_t *pos,
                          long N, long H, long W, long C, int relu, int bf16, int threads) {
    const long OH = H / 2, OW = W / 2;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (long n = 0; n < N; n++)
        for (long cb = 0; cb < C; cb = next_block(cb, C)) {
            vf wv[9], bv = {0};
            for (int t = 0; t < 9; t++) wv[t] = (vf)load16(w, t * C + cb, 0);
            if (bias) bv = (vf)load16(bias, cb, 0);
            for (long oh = 0; oh < OH; oh++)
                for (long ow = 0; ow < OW; ow++) {
                    float p[4][4];
                    load_patch(x, n, oh, ow, H, W, p);
                    vi out[4];
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            vf acc = {0};
                            for (int j = 0; j < 3; j++)  /* column by column: oneDNN's order here */
                                for (int i = 0; i < 3; i++) acc += wv[3 * i + j] * p[a + i][b + j];
                            acc += bv;
                            out[2 * a + b] = bf16 ? round_bf16(acc) : (vi)acc;
                        }
                    vi m, k;
                    window_max16(out[0], out[1], out[2], out[3], &m, &k);
                    if (relu) relu16(&m, &k);
                    const long o = ((n * OH + oh) * OW + ow) * C + cb;
                    store16(y, o, m, bf16);
                    if (pos) store_pos(pos + o, k);
                }
        }
}

#define CHUNK 16  /* images per partial sum in the backward */

/* Scratch floats cnnlab_conv1pool_bwd needs for N images and C channels: one (10, C) partial sum
 * (9 taps, then the bias) per chunk of CHUNK images. */
long cnnlab_conv1pool_bwd_scratch(long N, long C) { return (N + CHUNK - 1) / CHUNK * 10 * C; }

/* dw[t][c] = sum over windows of g * (the input under tap t at the window's winning position);
 * dbias[c] = sum of g over windows whose position is 0-3. g: bf16 bits (bf16 = 1) or fp32.
 * scratch: cnnlab_conv1pool_bwd_scratch(N, C) floats. */
void cnnlab_conv1pool_bwd(const void *g, const uint8_t *pos, const float *x, float *dw, float *dbias,
                          float *scratch, long N, long H, long W, long C, int bf16, int threads) {
    const long OH = H / 2, OW = W / 2, chunks = (N + CHUNK - 1) / CHUNK;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (long chunk = 0; chunk < chunks; chunk++) {
        const long n_end = (chunk + 1) * CHUNK < N ? (chunk + 1) * CHUNK : N;
        float *part = scratch + chunk * 10 * C;  /* this chunk's (10, C) sums */
        for (long cb = 0; cb < C; cb = next_block(cb, C)) {
            vf acc[9] = {{0}}, bacc = {0};
            for (long n = chunk * CHUNK; n < n_end; n++)
                for (long oh = 0; oh < OH; oh++)
                    for (long ow = 0; ow < OW; ow++) {
                        const long o = ((n * OH + oh) * OW + ow) * C + cb;
                        const vf gv = (vf)load16(g, o, bf16);
                        const vi k = load_pos(pos + o);
                        float p[4][4];
                        load_patch(x, n, oh, ow, H, W, p);
                        for (int a = 0; a < 2; a++)
                            for (int b = 0; b < 2; b++) {
                                const vf gp = (vf)((vi)gv & (k == 2 * a + b));  /* g where this position won */
                                for (int i = 0; i < 3; i++)
                                    for (int j = 0; j < 3; j++) acc[3 * i + j] += gp * p[a + i][b + j];
                                bacc += gp;
                            }
                    }
            for (int t = 0; t < 9; t++) memcpy(part + t * C + cb, &acc[t], sizeof acc[t]);
            memcpy(part + 9 * C + cb, &bacc, sizeof bacc);
        }
    }
    for (long i = 0; i < 10 * C; i++) {  /* the chunks' sums, in chunk order */
        float sum = 0.0f;
        for (long chunk = 0; chunk < chunks; chunk++) sum += scratch[chunk * 10 * C + i];
        if (i < 9 * C) dw[i] = sum;
        else if (dbias) dbias[i - 9 * C] = sum;
    }
}
