// bf16_matmul: oneDNN bf16 matmul (bf16 × bf16 → fp32, fp32 accumulation) against OpenBLAS sgemm on the
// GEMM shapes of a ViT-B/16 forward at batch 32 (M = 32·197 rows), measured interleaved in one process.
//
//   bash Benchmarks/bf16/run.sh [THREADS] [ROUNDS]      (needs libdnnl-dev; Debian 12 ships oneDNN 2.6)
//
// Per shape and round, in turn: OpenBLAS sgemm (the fp32 path `cka extract` uses), oneDNN fp32 matmul, oneDNN
// bf16 matmul with the weights converted once into oneDNN's preferred layout (the activations already bf16),
// and the same plus the fp32 → bf16 conversion of the activations that a bf16 forward pays per layer. The
// median of the rounds is printed, with GFLOP/s (2·M·N·K) and the ratio to sgemm of the same run.
#include <cblas.h>
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) { \
    fprintf(stderr, "%s failed: %d\n", #x, (int)s_); exit(2); } } while (0)

extern void openblas_set_num_threads(int);
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static double median(double *v, int n) { qsort(v, n, sizeof *v, cmp); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }

static dnnl_engine_t eng;
static dnnl_stream_t stream;

static void reorder(dnnl_memory_t from, dnnl_memory_t to) {
    const dnnl_memory_desc_t *fmd, *tmd;
    CHECK(dnnl_memory_get_memory_desc(from, &fmd));
    CHECK(dnnl_memory_get_memory_desc(to, &tmd));
    dnnl_primitive_desc_t pd; dnnl_primitive_t p;
    CHECK(dnnl_reorder_primitive_desc_create(&pd, fmd, eng, tmd, eng, NULL));
    CHECK(dnnl_primitive_create(&p, pd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    CHECK(dnnl_primitive_execute(p, stream, 2, args));
    CHECK(dnnl_stream_wait(stream));
    dnnl_primitive_destroy(p); dnnl_primitive_desc_destroy(pd);
}

/// A matmul primitive C[M,N] = A[M,K]·W[N,K]ᵀ of element type `t`, weights in the layout oneDNN prefers.
typedef struct { dnnl_primitive_t prim; dnnl_memory_t a, w, c; const char *impl; } Matmul;

static Matmul make(int64_t M, int64_t N, int64_t K, dnnl_data_type_t t, const float *w32, float *c32) {
    Matmul m;
    dnnl_memory_desc_t a_md, w_md, c_md, w32_md;
    dnnl_dims_t ad = {M, K}, wd = {K, N}, cd = {M, N};
    CHECK(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, t, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, 2, wd, t, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&w32_md, 2, wd, dnnl_f32, dnnl_ba));  // W [N, K] row-major = Wᵀ
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &a_md, &w_md, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &m.impl));
    const dnnl_memory_desc_t *w_real = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    CHECK(dnnl_primitive_create(&m.prim, pd));
    CHECK(dnnl_memory_create(&m.a, &a_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&m.w, w_real, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&m.c, &c_md, eng, c32));
    dnnl_memory_t w32m;
    CHECK(dnnl_memory_create(&w32m, &w32_md, eng, (void *)w32));
    reorder(w32m, m.w);  // the weights, converted once
    dnnl_memory_destroy(w32m);
    return m;
}

static void run(Matmul *m) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->w}, {DNNL_ARG_DST, m->c}};
    CHECK(dnnl_primitive_execute(m->prim, stream, 3, args));
    CHECK(dnnl_stream_wait(stream));
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, rounds = argc > 2 ? atoi(argv[2]) : 5;
    int64_t M = argc > 3 ? atoll(argv[3]) : 32 * 197;
    openblas_set_num_threads(threads);
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d (cpu runtime %u, isa %s), OpenBLAS %s, %d thread(s), M = %lld, median of %d rounds\n",
           v->major, v->minor, v->patch, v->cpu_runtime, getenv("ONEDNN_MAX_CPU_ISA") ? getenv("ONEDNN_MAX_CPU_ISA") : "auto",
           openblas_get_config(), threads, (long long)M, rounds);
    struct { const char *name; int64_t N, K; } shapes[] = {
        {"qkv  [M,768]x[768,2304]", 2304, 768}, {"proj [M,768]x[768,768]", 768, 768},
        {"fc1  [M,768]x[768,3072]", 3072, 768}, {"fc2  [M,3072]x[3072,768]", 768, 3072}};
    printf("%-26s %12s %12s %12s %12s %9s %9s\n", "shape", "sgemm GF/s", "dnnl f32", "dnnl bf16", "bf16+cvt",
           "bf16/sg", "+cvt/sg");
    double total[4] = {0};
    for (int s = 0; s < 4; s++) {
        int64_t N = shapes[s].N, K = shapes[s].K;
        float *a = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N);
        for (int64_t i = 0; i < M * K; i++) a[i] = (float)((i * 7919 % 2001) - 1000) / 1000.0f;
        for (int64_t i = 0; i < N * K; i++) w[i] = (float)((i * 104729 % 2001) - 1000) / 30000.0f;
        Matmul f = make(M, N, K, dnnl_f32, w, c), b = make(M, N, K, dnnl_bf16, w, c);
        dnnl_memory_t a32; dnnl_memory_desc_t a32_md; dnnl_dims_t ad = {M, K};
        CHECK(dnnl_memory_desc_init_by_tag(&a32_md, 2, ad, dnnl_f32, dnnl_ab));
        CHECK(dnnl_memory_create(&a32, &a32_md, eng, a));
        void *fa; CHECK(dnnl_memory_get_data_handle(f.a, &fa)); memcpy(fa, a, sizeof(float) * M * K);
        reorder(a32, b.a);
        double t[4][64];
        double flop = 2.0 * M * N * K;
        for (int r = -1; r < rounds && r < 64; r++) {  // round -1 warms up
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, w, K, 0, c, N);
            double t1 = now(); run(&f);
            double t2 = now(); run(&b);
            double t3 = now(); reorder(a32, b.a); run(&b);
            double t4 = now();
            if (r >= 0) { t[0][r] = t1 - t0; t[1][r] = t2 - t1; t[2][r] = t3 - t2; t[3][r] = t4 - t3; }
        }
        double g[4];
        for (int k = 0; k < 4; k++) { double m = median(t[k], rounds); g[k] = flop / m / 1e9; total[k] += m; }
        printf("%-26s %12.1f %12.1f %12.1f %12.1f %8.2fx %8.2fx\n", shapes[s].name, g[0], g[1], g[2], g[3],
               g[2] / g[0], g[3] / g[0]);
        if (s == 0) printf("  impl: f32 %s, bf16 %s\n", f.impl, b.impl);
        free(a); free(w); free(c);
    }
    printf("%-26s %12.3f %12.3f %12.3f %12.3f %8.2fx %8.2fx   (seconds per block, sum of the 4 shapes)\n",
           "one block", total[0], total[1], total[2], total[3], total[0] / total[2], total[0] / total[3]);
    return 0;
}
