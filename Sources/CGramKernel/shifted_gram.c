// See include/CGramKernel.h. Layout of the scratch (floats, 64-byte aligned):
//   block:        np rows × BLOCK columns — the shifted columns of the current block (np = n rounded up to 4;
//                 the padding rows stay 0);
//   accumulators: one 4×4 tile of 16-lane sums per pair of 4-row groups (gi ≥ gj), 16 × 16 floats each.
#include "CGramKernel.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { LANES = 16, BLOCK = 256, FLUSH = 4096 };

static long padded_rows(long n) { return (n + 3) & ~3L; }
static long tile_count(long n) {
    long g = padded_rows(n) / 4;
    return g * (g + 1) / 2;
}

long cka_shifted_gram_scratch_floats(long n) {
    return padded_rows(n) * BLOCK + tile_count(n) * 16 * LANES;
}

/// Writes the columns [c0, c0 + w) of every row, minus row 0, into the block (w ≤ BLOCK), zero-padded to a
/// multiple of 16 columns.
static void shift_block(const float *const *rows, long n, long c0, long w, float *block) {
    const float *first = rows[0] + c0;
    long wp = (w + LANES - 1) / LANES * LANES;
    for (long r = 0; r < n; r++) {
        const float *row = rows[r] + c0;
        float *o = block + r * BLOCK;
        for (long j = 0; j < w; j++) o[j] = row[j] - first[j];
        for (long j = w; j < wp; j++) o[j] = 0;
    }
}

/// Adds the lanes of every accumulator into the float64 Gram (lanes in order) and zeroes them.
static void flush(long n, float *acc, double *gram) {
    long groups = padded_rows(n) / 4, t = 0;
    for (long gi = 0; gi < groups; gi++) {
        for (long gj = 0; gj <= gi; gj++, t++) {
            float *a = acc + t * 16 * LANES;
            for (long u = 0; u < 4; u++) {
                for (long v = 0; v < 4; v++) {
                    long i = gi * 4 + u, j = gj * 4 + v;
                    const float *lane = a + (u * 4 + v) * LANES;
                    if (i < n && j <= i) {
                        double s = 0;
                        for (long l = 0; l < LANES; l++) s += (double)lane[l];
                        gram[i * n + j] += s;
                    }
                }
            }
            memset(a, 0, sizeof(float) * 16 * LANES);
        }
    }
}

/// The tiles over one block of `wp` columns (a multiple of 16) in C: the same fused multiply-adds in the same
/// order as the AVX-512 version (compilers vectorise the 16 lanes).
static inline __attribute__((always_inline)) void tiles_generic(
    long n, const float *restrict block, long wp, float *restrict acc) {
    long groups = padded_rows(n) / 4, t = 0;
    for (long gi = 0; gi < groups; gi++) {
        for (long gj = 0; gj <= gi; gj++, t++) {
            float *a = acc + t * 16 * LANES;
            for (long u = 0; u < 4; u++) {
                for (long v = 0; v < 4; v++) {
                    const float *x = block + (gi * 4 + u) * BLOCK, *y = block + (gj * 4 + v) * BLOCK;
                    float s[LANES];
                    memcpy(s, a + (u * 4 + v) * LANES, sizeof s);
                    for (long c = 0; c < wp; c += LANES)
                        for (long l = 0; l < LANES; l++) s[l] = fmaf(x[c + l], y[c + l], s[l]);
                    memcpy(a + (u * 4 + v) * LANES, s, sizeof s);
                }
            }
        }
    }
}

static void tiles_portable(long n, const float *block, long wp, float *acc) { tiles_generic(n, block, wp, acc); }

#if defined(__x86_64__)
/// The tiles over one block, 16 zmm accumulators per tile. While it runs, the next block's columns (from
/// column `next` of every row; none if `next` < 0) are prefetched, one cache line per step (prefetches never
/// fault, so the lines past the end of a short last block do no harm).
__attribute__((target("avx512f"))) static void tiles_avx512(
    long n, const float *block, long wp, float *acc, const float *const *rows, long next) {
    enum { LINES_PER_ROW = BLOCK / LANES };
    long groups = padded_rows(n) / 4, t = 0, lines = next >= 0 ? n * LINES_PER_ROW : 0, line = 0;
    for (long gi = 0; gi < groups; gi++) {
        for (long gj = 0; gj <= gi; gj++, t++) {
            __m512 *a = (__m512 *)(acc + t * 16 * LANES);
            __m512 s00 = a[0], s01 = a[1], s02 = a[2], s03 = a[3], s10 = a[4], s11 = a[5], s12 = a[6],
                   s13 = a[7], s20 = a[8], s21 = a[9], s22 = a[10], s23 = a[11], s30 = a[12], s31 = a[13],
                   s32 = a[14], s33 = a[15];
            const float *x0 = block + gi * 4 * BLOCK, *x1 = x0 + BLOCK, *x2 = x1 + BLOCK, *x3 = x2 + BLOCK;
            const float *y0 = block + gj * 4 * BLOCK, *y1 = y0 + BLOCK, *y2 = y1 + BLOCK, *y3 = y2 + BLOCK;
            for (long c = 0; c < wp; c += LANES) {
                if (line < lines) {
                    _mm_prefetch((const char *)(rows[line / LINES_PER_ROW] + next + (line % LINES_PER_ROW) * LANES),
                                 _MM_HINT_T0);
                    line++;
                }
                __m512 a0 = _mm512_load_ps(x0 + c), a1 = _mm512_load_ps(x1 + c), a2 = _mm512_load_ps(x2 + c),
                       a3 = _mm512_load_ps(x3 + c);
                __m512 b0 = _mm512_load_ps(y0 + c), b1 = _mm512_load_ps(y1 + c), b2 = _mm512_load_ps(y2 + c),
                       b3 = _mm512_load_ps(y3 + c);
                s00 = _mm512_fmadd_ps(a0, b0, s00), s01 = _mm512_fmadd_ps(a0, b1, s01);
                s02 = _mm512_fmadd_ps(a0, b2, s02), s03 = _mm512_fmadd_ps(a0, b3, s03);
                s10 = _mm512_fmadd_ps(a1, b0, s10), s11 = _mm512_fmadd_ps(a1, b1, s11);
                s12 = _mm512_fmadd_ps(a1, b2, s12), s13 = _mm512_fmadd_ps(a1, b3, s13);
                s20 = _mm512_fmadd_ps(a2, b0, s20), s21 = _mm512_fmadd_ps(a2, b1, s21);
                s22 = _mm512_fmadd_ps(a2, b2, s22), s23 = _mm512_fmadd_ps(a2, b3, s23);
                s30 = _mm512_fmadd_ps(a3, b0, s30), s31 = _mm512_fmadd_ps(a3, b1, s31);
                s32 = _mm512_fmadd_ps(a3, b2, s32), s33 = _mm512_fmadd_ps(a3, b3, s33);
            }
            a[0] = s00, a[1] = s01, a[2] = s02, a[3] = s03, a[4] = s10, a[5] = s11, a[6] = s12, a[7] = s13;
            a[8] = s20, a[9] = s21, a[10] = s22, a[11] = s23, a[12] = s30, a[13] = s31, a[14] = s32, a[15] = s33;
        }
    }
}

__attribute__((target("avx2,fma"))) static void tiles_avx2(long n, const float *block, long wp, float *acc) {
    tiles_generic(n, block, wp, acc);
}

#endif

int cka_shifted_gram_best_level(void) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

void cka_shifted_gram(
    const float *const *rows, long n, long begin, long end, double *gram, float *scratch, int level) {
    if (level < 0 || level > cka_shifted_gram_best_level()) level = cka_shifted_gram_best_level();
    float *block = scratch, *acc = scratch + padded_rows(n) * BLOCK;
    memset(scratch, 0, sizeof(float) * cka_shifted_gram_scratch_floats(n));
    long since_flush = 0;
    for (long c0 = begin; c0 < end; c0 += BLOCK) {
        long w = end - c0 < BLOCK ? end - c0 : BLOCK, wp = (w + LANES - 1) / LANES * LANES;
        shift_block(rows, n, c0, w, block);
#if defined(__x86_64__)
        if (level == 2) {
            tiles_avx512(n, block, wp, acc, rows, c0 + BLOCK < end ? c0 + BLOCK : -1);
        } else if (level == 1) {
            tiles_avx2(n, block, wp, acc);
        } else {
            tiles_portable(n, block, wp, acc);
        }
#else
        tiles_portable(n, block, wp, acc);
#endif
        since_flush += BLOCK;
        if (since_flush >= FLUSH || c0 + BLOCK >= end) {
            flush(n, acc, gram);
            since_flush = 0;
        }
    }
}
