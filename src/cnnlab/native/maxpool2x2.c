/* 2x2 max pooling with stride 2 on channels-last (NHWC) CPU tensors, bf16 and fp32, forward and
 * backward; loaded by cnnlab/native/maxpool2x2.py through ctypes.
 *
 * Why: torch's CPU kernel stores each window's argmax as an int64 (8 bytes per output value, as
 * much memory as the bf16 input itself) and its backward zero-fills the whole input gradient before
 * scattering into it. For non-overlapping 2x2 windows every input pixel belongs to exactly one
 * window, so the argmax fits in a uint8 (0-3, window order) and the backward writes each gradient
 * pixel once: either the output's gradient or zero. Measured on the 2-core AMD EPYC, (128, 16, 28,
 * 28) bf16: forward + backward ~0.4 ms against torch's 0.9-1.1 ms (docs/speed.md).
 *
 * Semantics are torch's exactly (tests/test_native_pool.py compares values and gradients bitwise):
 * window_max16's scan order and NaN rule (vec16.h); with an odd height or width the last row or
 * column belongs to no window (floor mode) and gets a zero gradient. The gradient is written as
 * 0 + g, as torch's zero-fill-then-add gives (-0.0 becomes +0.0).
 *
 * With relu set, the forward returns relu(max) and marks a window whose output is <= 0 with
 * position 4, which matches none of 0-3 in the backward: all four pixels get zero gradient, as
 * threshold_backward followed by the pooling's backward gives. Sequential runs ReLU-then-pooling
 * as pooling-then-ReLU (model.py), so this is one pass instead of three (pooling, ReLU, and the
 * ReLU's backward).
 *
 * Layout: x[n][h][w][c], c fastest, C >= 16 (vec16.h's next_block).
 *
 * Threads: images are split among `threads` OpenMP threads (static schedule). Built with -fopenmp
 * only where torch's own OpenMP runtime is GNU libgomp (build.py), so these are the very threads
 * torch's operators use and nothing competes for the cores; otherwise the pragmas are ignored.
 * Every output is one image's own, so the figures do not depend on the thread count.
 */
#include "vec16.h"

/* y (N, H/2, W/2, C) from x (N, H, W, C); pos, the same shape in uint8, or NULL when no gradient is
 * needed; relu: 0 for max pooling, 1 for relu(max pooling); bf16: element type, 1 bf16, 0 fp32. */
void cnnlab_maxpool2x2_fwd(const void *x, void *y, uint8_t *pos, long N, long H, long W, long C, int relu,
                           int bf16, int threads) {
    const long OH = H / 2, OW = W / 2;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (long n = 0; n < N; n++)
        for (long oh = 0; oh < OH; oh++)
            for (long ow = 0; ow < OW; ow++) {
                const long i00 = ((n * H + 2 * oh) * W + 2 * ow) * C, i10 = i00 + W * C;  /* the window's rows */
                const long o = ((n * OH + oh) * OW + ow) * C;
                for (long c = 0; c < C; c = next_block(c, C)) {
                    vi m, k;
                    window_max16(load16(x, i00 + c, bf16), load16(x, i00 + C + c, bf16),
                                 load16(x, i10 + c, bf16), load16(x, i10 + C + c, bf16), &m, &k);
                    if (relu) relu16(&m, &k);
                    store16(y, o + c, m, bf16);
                    if (pos) store_pos(pos + o + c, k);
                }
            }
}

/* gx (N, H, W, C) from g (N, H/2, W/2, C) and pos: every element of gx is written (once, but for
 * the overlap of a last channel block), so gx needs no zero fill. */
void cnnlab_maxpool2x2_bwd(const void *g, const uint8_t *pos, void *gx, long N, long H, long W, long C, int bf16,
                           int threads) {
    const long OH = H / 2, OW = W / 2, size = bf16 ? 2 : 4;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (long n = 0; n < N; n++) {
        for (long oh = 0; oh < OH; oh++)
            for (long ow = 0; ow < OW; ow++) {
                const long i00 = ((n * H + 2 * oh) * W + 2 * ow) * C, i10 = i00 + W * C;
                const long o = ((n * OH + oh) * OW + ow) * C;
                for (long c = 0; c < C; c = next_block(c, C)) {
                    const vi v = (vi)((vf)load16(g, o + c, bf16) + 0.0f);  /* 0 + g: -0.0 -> +0.0 */
                    const vi k = load_pos(pos + o + c);
                    store16(gx, i00 + c, v & (k == 0), bf16);
                    store16(gx, i00 + C + c, v & (k == 1), bf16);
                    store16(gx, i10 + c, v & (k == 2), bf16);
                    store16(gx, i10 + C + c, v & (k == 3), bf16);
                }
            }
        /* the pixels no window covers (last row / column of an odd size) get zero gradient */
        if (W % 2)
            for (long h = 0; h < 2 * OH; h++) memset((char *)gx + ((n * H + h) * W + W - 1) * C * size, 0, C * size);
        if (H % 2) memset((char *)gx + (n * H + H - 1) * W * C * size, 0, W * C * size);
    }
}
