// The Gram kernel of CKATensor's `Tensor.centeredGram(rows:width:)`: a C target only so that its inner loop can
// use AVX-512 where the CPU has it (Swift code is compiled for baseline x86-64). Imported only by CKATensor.
#ifndef CKA_GRAM_KERNEL_H
#define CKA_GRAM_KERNEL_H

/// The largest row count the kernel takes (its accumulators grow with n²); larger Grams go through SYRK.
#define CKA_GRAM_KERNEL_MAX_ROWS 256

/// Floats of 64-byte-aligned scratch that `cka_shifted_gram` needs for `n` rows.
long cka_shifted_gram_scratch_floats(long n);

/// Adds to `gram` (n×n, row-major, float64; the lower triangle with the diagonal is written, the upper left
/// alone) the Gram of the rows shifted by the first row, over the columns [begin, end):
///
///     gram[i][j] += Σ_c (rows[i][c] − rows[0][c]) · (rows[j][c] − rows[0][c])      for j ≤ i.
///
/// Shifting by any common row leaves the centred Gram H·G·H unchanged, and keeps the float32 products at the
/// scale of the differences between the rows (no cancellation against a large mean). The sums are float32 in
/// 16 lanes (lane l takes the columns ≡ l mod 16 from `begin`, fused multiply-adds in column order), flushed
/// to float64 every 4096 columns (lanes added in order). The result has the same bits at every `level`:
/// 2 = AVX-512F, 1 = AVX2 + FMA, 0 = portable C; −1 (or a level the CPU lacks) takes the best the CPU has.
/// 1 ≤ n ≤ CKA_GRAM_KERNEL_MAX_ROWS; `scratch` holds `cka_shifted_gram_scratch_floats(n)` floats.
void cka_shifted_gram(
    const float *const *rows, long n, long begin, long end, double *gram, float *scratch, int level);

/// The best `level` of `cka_shifted_gram` on this CPU.
int cka_shifted_gram_best_level(void);

#endif
