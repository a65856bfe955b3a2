/*
 * edgemm native pre-processing kernels (CPython extension ``edgemm.runtime.native._preproc``).
 *
 *  image(src, out, src_h, src_w, out_h, out_w, bgr, nchw, mean3, inv_std3)
 *      HxWx3 uint8 RGB frame -> fused half-pixel bilinear resize (as cv2 INTER_LINEAR and
 *      edgemm.data.image.resize_bilinear) + channel order + (x - mean) * inv_std + HWC->CHW,
 *      written into a preallocated float32 buffer. mean / inv_std are in 0..255 units and in
 *      the model's channel order.
 *
 *  log_mel(x, out, window, fb, fb_start, fb_end, n_fft, hop, n_frames, n_mels, floor[, out_stride, out_offset])
 *      float32 waveform -> [n_mels, n_frames] float32 log-mel, exactly the recipe of
 *      edgemm.data.audio.log_mel: frames that end at the last sample (no centring), periodic Hann
 *      window, zero-padded radix-2 real FFT of size n_fft (a complex FFT of n_fft/2 points plus the
 *      split step), power, triangular mel filterbank (sparse rows fb_start..fb_end), log(max(., floor)).
 *      FFTs run 8 frames at a time in a structure-of-arrays layout so the compiler vectorises them.
 *
 *  resample(x, x_start, bank, up, down, half_len, taps, m0, out)
 *      scipy.signal.resample_poly's filter (designed once in Python, passed as a polyphase bank)
 *      applied to a segment of an endless stream: output samples m0.. from the input samples that
 *      are in ``x`` (stream indices x_start..), zero elsewhere. The streaming audio frontend
 *      (edgemm.runtime.native.StreamingLogMel) calls it with only the audio that arrived since the
 *      previous video frame.
 *
 * All release the GIL while they compute. The numpy code in edgemm/data/ is the reference;
 * tests/runtime/test_native.py holds the parity tests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* One binary, the best code path for the CPU it runs on (GCC + glibc ifunc on x86-64). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define EDGEMM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define EDGEMM_CLONES
#endif

#define LANES 8
#define EDGEMM_PI 3.14159265358979323846

/* ------------------------------------------------------------------------------------------ */
/* image                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int i0, i1;
    float w0, w1;
} tap_t;

/* Same arithmetic as edgemm.data.image._bilinear_taps (float64 positions, float32 weights). */
static void bilinear_taps(int src, int dst, tap_t *taps) {
    double scale = (double)src / (double)dst;
    for (int i = 0; i < dst; i++) {
        double pos = ((double)i + 0.5) * scale - 0.5;
        if (pos < 0.0) pos = 0.0;
        if (pos > (double)(src - 1)) pos = (double)(src - 1);
        int i0 = (int)floor(pos);
        int i1 = i0 + 1 < src ? i0 + 1 : src - 1;
        float w1 = (float)(pos - (double)i0);
        taps[i].i0 = i0;
        taps[i].i1 = i1;
        taps[i].w1 = w1;
        taps[i].w0 = 1.0f - w1;
    }
}

static void image_kernel(const uint8_t *src, Py_ssize_t src_len, int sw, float *out, int oh, int ow,
                         const tap_t *rt, const tap_t *ct, int bgr, int nchw,
                         const float mean[3], const float inv_std[3]) {
    /* plane[c]: output channel that source channel c lands in; its mean/std are the model's. */
    int plane[3] = {bgr ? 2 : 0, 1, bgr ? 0 : 2};
    float m[3], s[3];
    for (int c = 0; c < 3; c++) {
        m[c] = mean[plane[c]];
        s[c] = inv_std[plane[c]];
    }
    const Py_ssize_t row_stride = (Py_ssize_t)sw * 3;
    const Py_ssize_t hw = (Py_ssize_t)oh * ow;
#if defined(__SSE2__)
    const __m128 vm = _mm_setr_ps(m[0], m[1], m[2], 0.0f);
    const __m128 vs = _mm_setr_ps(s[0], s[1], s[2], 0.0f);
    const __m128i zero = _mm_setzero_si128();
#endif
    for (int y = 0; y < oh; y++) {
        const uint8_t *r0 = src + (Py_ssize_t)rt[y].i0 * row_stride;
        const uint8_t *r1 = src + (Py_ssize_t)rt[y].i1 * row_stride;
        const float a = rt[y].w0, b = rt[y].w1;
        for (int x = 0; x < ow; x++) {
            const Py_ssize_t o0 = (Py_ssize_t)ct[x].i0 * 3, o1 = (Py_ssize_t)ct[x].i1 * 3;
            const float cw0 = ct[x].w0, cw1 = ct[x].w1;
            float px[4];
#if defined(__SSE2__)
            /* 4-byte loads (RGB + one spare byte) need one byte of slack past the pixel. */
            if ((r1 - src) + o1 + 4 <= src_len && (r0 - src) + o1 + 4 <= src_len) {
                int32_t q00, q01, q10, q11;
                memcpy(&q00, r0 + o0, 4);
                memcpy(&q01, r0 + o1, 4);
                memcpy(&q10, r1 + o0, 4);
                memcpy(&q11, r1 + o1, 4);
#define U8X4_TO_PS(q) _mm_cvtepi32_ps(_mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(q), zero), zero))
                __m128 p00 = U8X4_TO_PS(q00), p01 = U8X4_TO_PS(q01);
                __m128 p10 = U8X4_TO_PS(q10), p11 = U8X4_TO_PS(q11);
#undef U8X4_TO_PS
                __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
                __m128 v0 = _mm_add_ps(_mm_mul_ps(p00, va), _mm_mul_ps(p10, vb));
                __m128 v1 = _mm_add_ps(_mm_mul_ps(p01, va), _mm_mul_ps(p11, vb));
                __m128 v = _mm_add_ps(_mm_mul_ps(v0, _mm_set1_ps(cw0)), _mm_mul_ps(v1, _mm_set1_ps(cw1)));
                _mm_storeu_ps(px, _mm_mul_ps(_mm_sub_ps(v, vm), vs));
            } else
#endif
            {
                for (int c = 0; c < 3; c++) {
                    float v0 = (float)r0[o0 + c] * a + (float)r1[o0 + c] * b;
                    float v1 = (float)r0[o1 + c] * a + (float)r1[o1 + c] * b;
                    px[c] = (v0 * cw0 + v1 * cw1 - m[c]) * s[c];
                }
            }
            if (nchw) {
                const Py_ssize_t p = (Py_ssize_t)y * ow + x;
                out[plane[0] * hw + p] = px[0];
                out[plane[1] * hw + p] = px[1];
                out[plane[2] * hw + p] = px[2];
            } else {
                float *o = out + ((Py_ssize_t)y * ow + x) * 3;
                o[plane[0]] = px[0];
                o[plane[1]] = px[1];
                o[plane[2]] = px[2];
            }
        }
    }
}


#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define EDGEMM_HAVE_AVX2_KERNEL 1
/*
 * AVX2 + FMA: one 8-byte load per source row gives both horizontal taps (pixel c0 and c0 + 1 are
 * adjacent: c1 == c0 + 1, or c1 == c0 with weight 0 at the right border), so each output pixel
 * costs two loads, two widenings and a few FMAs; 8 pixels are transposed into the 3 planes at once.
 */
__attribute__((target("avx2,fma")))
static void image_kernel_avx2(const uint8_t *src, Py_ssize_t src_len, int sw, float *out, int oh, int ow,
                              const tap_t *rt, const tap_t *ct, int bgr, const float mean[3], const float inv_std[3]) {
    int plane[3] = {bgr ? 2 : 0, 1, bgr ? 0 : 2};
    float m[3], s[3];
    for (int c = 0; c < 3; c++) {
        m[c] = mean[plane[c]];
        s[c] = inv_std[plane[c]];
    }
    const Py_ssize_t row_stride = (Py_ssize_t)sw * 3;
    const Py_ssize_t hw = (Py_ssize_t)oh * ow;
    const __m128 vm = _mm_setr_ps(m[0], m[1], m[2], 0.0f);
    const __m128 vs = _mm_setr_ps(s[0], s[1], s[2], 0.0f);
    const __m256i upper = _mm256_setr_epi32(3, 4, 5, 7, 7, 7, 7, 7);
    /* Per output column: [w0 w0 w0 w1 w1 w1 0 0] for the two adjacent source pixels. */
    float *cwv = NULL;
    if (posix_memalign((void **)&cwv, 32, sizeof(float) * 8 * (size_t)ow) != 0) cwv = NULL;
    if (cwv)
        for (int x = 0; x < ow; x++) {
            float *w = cwv + 8 * (Py_ssize_t)x;
            w[0] = w[1] = w[2] = ct[x].w0;
            w[3] = w[4] = w[5] = ct[x].w1;
            w[6] = w[7] = 0.0f;
        }
    float *p0 = out + (Py_ssize_t)plane[0] * hw, *p1 = out + (Py_ssize_t)plane[1] * hw, *p2 = out + (Py_ssize_t)plane[2] * hw;
    for (int y = 0; y < oh; y++) {
        const Py_ssize_t off0 = (Py_ssize_t)rt[y].i0 * row_stride, off1 = (Py_ssize_t)rt[y].i1 * row_stride;
        const uint8_t *r0 = src + off0, *r1 = src + off1;
        const Py_ssize_t last = off0 > off1 ? off0 : off1;
        const __m256 va = _mm256_set1_ps(rt[y].w0), vb = _mm256_set1_ps(rt[y].w1);
        const Py_ssize_t row = (Py_ssize_t)y * ow;
        int x = 0;
        /* Rows whose every 8-byte load stays inside the frame (all but, at most, the last one):
           8 pixels per step, no bounds checks. */
        if (cwv && last + (Py_ssize_t)ct[ow - 1].i0 * 3 + 8 <= src_len) {
            for (; x + 8 <= ow; x += 8) {
                __m128 px[8];
                for (int k = 0; k < 8; k++) {
                    const Py_ssize_t o = (Py_ssize_t)ct[x + k].i0 * 3;
                    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(r0 + o))));
                    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(r1 + o))));
                    __m256 v = _mm256_mul_ps(_mm256_fmadd_ps(f1, vb, _mm256_mul_ps(f0, va)), _mm256_load_ps(cwv + 8 * (Py_ssize_t)(x + k)));
                    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_castps256_ps128(_mm256_permutevar8x32_ps(v, upper)));
                    px[k] = _mm_mul_ps(_mm_sub_ps(sum, vm), vs);
                }
                __m128 a0 = px[0], a1 = px[1], a2 = px[2], a3 = px[3];
                __m128 b0 = px[4], b1 = px[5], b2 = px[6], b3 = px[7];
                _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
                _MM_TRANSPOSE4_PS(b0, b1, b2, b3);
                _mm_storeu_ps(p0 + row + x, a0);
                _mm_storeu_ps(p0 + row + x + 4, b0);
                _mm_storeu_ps(p1 + row + x, a1);
                _mm_storeu_ps(p1 + row + x + 4, b1);
                _mm_storeu_ps(p2 + row + x, a2);
                _mm_storeu_ps(p2 + row + x + 4, b2);
            }
        }
        while (x < ow) {
            __m128 px[8];
            int n = ow - x < 8 ? ow - x : 8;
            for (int k = 0; k < n; k++) {
                const tap_t *t = &ct[x + k];
                const Py_ssize_t o = (Py_ssize_t)t->i0 * 3;
                if (cwv && last + o + 8 <= src_len) {
                    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(r0 + o))));
                    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(r1 + o))));
                    __m256 v = _mm256_fmadd_ps(f1, vb, _mm256_mul_ps(f0, va));
                    v = _mm256_mul_ps(v, _mm256_load_ps(cwv + 8 * (Py_ssize_t)(x + k)));
                    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v),
                                            _mm256_castps256_ps128(_mm256_permutevar8x32_ps(v, upper)));
                    px[k] = _mm_mul_ps(_mm_sub_ps(sum, vm), vs);
                } else {
                    const Py_ssize_t o1 = (Py_ssize_t)t->i1 * 3;
                    float q[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    for (int c = 0; c < 3; c++) {
                        float v0 = (float)r0[o + c] * rt[y].w0 + (float)r1[o + c] * rt[y].w1;
                        float v1 = (float)r0[o1 + c] * rt[y].w0 + (float)r1[o1 + c] * rt[y].w1;
                        q[c] = (v0 * t->w0 + v1 * t->w1 - m[c]) * s[c];
                    }
                    px[k] = _mm_loadu_ps(q);
                }
            }
            if (n == 8) {
                __m128 a0 = px[0], a1 = px[1], a2 = px[2], a3 = px[3];
                __m128 b0 = px[4], b1 = px[5], b2 = px[6], b3 = px[7];
                _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
                _MM_TRANSPOSE4_PS(b0, b1, b2, b3);
                _mm_storeu_ps(p0 + row + x, a0);
                _mm_storeu_ps(p0 + row + x + 4, b0);
                _mm_storeu_ps(p1 + row + x, a1);
                _mm_storeu_ps(p1 + row + x + 4, b1);
                _mm_storeu_ps(p2 + row + x, a2);
                _mm_storeu_ps(p2 + row + x + 4, b2);
            } else {
                for (int k = 0; k < n; k++) {
                    float q[4];
                    _mm_storeu_ps(q, px[k]);
                    p0[row + x + k] = q[0];
                    p1[row + x + k] = q[1];
                    p2[row + x + k] = q[2];
                }
            }
            x += n;
        }
    }
    free(cwv);
}
#endif

static PyObject *py_image(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    int sh, sw, oh, ow, bgr, nchw;
    float mean[3], inv_std[3];
    if (!PyArg_ParseTuple(args, "y*w*iiiiii(fff)(fff):image", &src, &out, &sh, &sw, &oh, &ow, &bgr, &nchw,
                          &mean[0], &mean[1], &mean[2], &inv_std[0], &inv_std[1], &inv_std[2]))
        return NULL;
    PyObject *ret = NULL;
    tap_t stack_taps[2 * 1024];
    tap_t *taps = stack_taps;
    if (sh <= 0 || sw <= 0 || oh <= 0 || ow <= 0) {
        PyErr_SetString(PyExc_ValueError, "image sizes must be positive");
        goto done;
    }
    if (src.len < (Py_ssize_t)sh * sw * 3) {
        PyErr_Format(PyExc_ValueError, "source buffer holds %zd bytes, a %dx%dx3 frame needs %zd", src.len, sh, sw,
                     (Py_ssize_t)sh * sw * 3);
        goto done;
    }
    if (out.len < (Py_ssize_t)oh * ow * 3 * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "output buffer holds %zd bytes, 3x%dx%d float32 needs %zd", out.len, oh, ow,
                     (Py_ssize_t)oh * ow * 3 * (Py_ssize_t)sizeof(float));
        goto done;
    }
    if (oh + ow > 2 * 1024) {
        taps = (tap_t *)malloc(sizeof(tap_t) * (size_t)(oh + ow));
        if (!taps) {
            PyErr_NoMemory();
            goto done;
        }
    }
    bilinear_taps(sh, oh, taps);
    bilinear_taps(sw, ow, taps + oh);
    Py_BEGIN_ALLOW_THREADS
#ifdef EDGEMM_HAVE_AVX2_KERNEL
    if (nchw && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        image_kernel_avx2((const uint8_t *)src.buf, (Py_ssize_t)sh * sw * 3, sw, (float *)out.buf, oh, ow, taps,
                          taps + oh, bgr, mean, inv_std);
    else
#endif
    image_kernel((const uint8_t *)src.buf, (Py_ssize_t)sh * sw * 3, sw, (float *)out.buf, oh, ow, taps, taps + oh,
                 bgr, nchw, mean, inv_std);
    Py_END_ALLOW_THREADS
    ret = Py_None;
    Py_INCREF(ret);
done:
    if (taps != stack_taps) free(taps);
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* log-mel                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int n_fft;      /* real FFT size */
    int m;          /* complex FFT size n_fft / 2 */
    int *rev;       /* bit reversal of 0..m-1 */
    float *tw_re;   /* exp(-2 pi i k / m), k < m / 2 */
    float *tw_im;
    float *sp_re;   /* exp(-2 pi i k / n_fft), k <= m (split step) */
    float *sp_im;
} fft_plan;

#define MAX_PLANS 8
static fft_plan plans[MAX_PLANS];
static int n_plans = 0;

/* Called with the GIL held: plans are built once and never freed (a handful of KB). */
static const fft_plan *get_plan(int n_fft) {
    for (int i = 0; i < n_plans; i++)
        if (plans[i].n_fft == n_fft) return &plans[i];
    if (n_plans == MAX_PLANS) return NULL;
    fft_plan *p = &plans[n_plans];
    int m = n_fft / 2, bits = 0;
    while ((1 << bits) < m) bits++;
    p->rev = (int *)malloc(sizeof(int) * (size_t)m);
    p->tw_re = (float *)malloc(sizeof(float) * (size_t)(m / 2 + 1));
    p->tw_im = (float *)malloc(sizeof(float) * (size_t)(m / 2 + 1));
    p->sp_re = (float *)malloc(sizeof(float) * (size_t)(m + 1));
    p->sp_im = (float *)malloc(sizeof(float) * (size_t)(m + 1));
    if (!p->rev || !p->tw_re || !p->tw_im || !p->sp_re || !p->sp_im) {
        free(p->rev); free(p->tw_re); free(p->tw_im); free(p->sp_re); free(p->sp_im);
        return NULL;
    }
    for (int i = 0; i < m; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            if (i & (1 << b)) r |= 1 << (bits - 1 - b);
        p->rev[i] = r;
    }
    for (int k = 0; k <= m / 2; k++) {
        double ang = -2.0 * EDGEMM_PI * (double)k / (double)m;
        p->tw_re[k] = (float)cos(ang);
        p->tw_im[k] = (float)sin(ang);
    }
    for (int k = 0; k <= m; k++) {
        double ang = -2.0 * EDGEMM_PI * (double)k / (double)n_fft;
        p->sp_re[k] = (float)cos(ang);
        p->sp_im[k] = (float)sin(ang);
    }
    p->m = m;
    p->n_fft = n_fft;
    n_plans++;
    return p;
}

/* 8 frames side by side: GCC/Clang vector extension, one AVX register (two SSE ones by default). */
typedef float v8f __attribute__((vector_size(32)));

/*
 * re/im: [m] lanes of complex input in bit-reversed order -> FFT in natural order (in place).
 * power: [m + 1] lanes of |X_k|^2 of the real FFT whose even/odd samples were packed in re/im.
 */
static inline void fft_batch(const fft_plan *p, v8f *re, v8f *im, v8f *power) {
    const int m = p->m;
    for (int s = 2; s <= m; s <<= 1) {
        const int half = s >> 1, step = m / s;
        for (int start = 0; start < m; start += s) {
            for (int k = 0; k < half; k++) {
                const float wr = p->tw_re[k * step], wi = p->tw_im[k * step];
                const int i = start + k, j = start + k + half;
                const v8f br = re[j], bi = im[j];
                const v8f tr = br * wr - bi * wi;
                const v8f ti = br * wi + bi * wr;
                re[j] = re[i] - tr;
                im[j] = im[i] - ti;
                re[i] = re[i] + tr;
                im[i] = im[i] + ti;
            }
        }
    }
    /* Split step: X_k = E_k + W^k O_k with E = (Z_k + conj Z_{m-k}) / 2, O = (Z_k - conj Z_{m-k}) / 2i. */
    {
        const v8f s0 = re[0] + im[0], d0 = re[0] - im[0];
        power[0] = s0 * s0;
        power[m] = d0 * d0;
    }
    for (int k = 1; k < m; k++) {
        const float wr = p->sp_re[k], wi = p->sp_im[k];
        const v8f zr = re[k], zi = im[k], cr = re[m - k], ci = im[m - k];
        const v8f er = 0.5f * (zr + cr), ei = 0.5f * (zi - ci);
        const v8f or_ = 0.5f * (zi + ci), oi = -0.5f * (zr - cr);
        const v8f xr = er + wr * or_ - wi * oi;
        const v8f xi = ei + wr * oi + wi * or_;
        power[k] = xr * xr + xi * xi;
    }
}

/* log(x) for positive normal floats (Cephes logf: ~1 ulp); written so that a loop over lanes vectorises. */
static inline float log_lane(float x) {
    uint32_t i;
    memcpy(&i, &x, 4);
    float e = (float)((int)((i >> 23) & 0xff) - 126);
    i = (i & 0x807fffffu) | 0x3f000000u; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &i, 4);
    const int small = m < 0.707106781186547524f;
    e = small ? e - 1.0f : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return m + y + 0.693359375f * e;
}

EDGEMM_CLONES
static void log_mel_kernel(const fft_plan *p, const float *x, float *out, const float *win, int win_length,
                           const float *fb, int n_bins, const int32_t *fb_start, const int32_t *fb_end, int hop,
                           int n_frames, int n_mels, float floor_, Py_ssize_t out_stride) {
    const int m = p->m, n_fft = p->n_fft;
    v8f *re = NULL, *im = NULL, *power = NULL;
    float *wpad = (float *)calloc((size_t)n_fft, sizeof(float));
    if (posix_memalign((void **)&re, 32, sizeof(v8f) * (size_t)m) != 0) re = NULL;
    if (posix_memalign((void **)&im, 32, sizeof(v8f) * (size_t)m) != 0) im = NULL;
    if (posix_memalign((void **)&power, 32, sizeof(v8f) * (size_t)(m + 1)) != 0) power = NULL;
    if (!re || !im || !power || !wpad) {
        free(re); free(im); free(power); free(wpad);
        for (int mel = 0; mel < n_mels; mel++)
            for (int f = 0; f < n_frames; f++) out[(Py_ssize_t)mel * out_stride + f] = NAN;
        return;
    }
    memcpy(wpad, win, sizeof(float) * (size_t)win_length);
    const int pairs = (win_length + 1) / 2; /* complex points that hold samples; the rest are zero */
    for (int f0 = 0; f0 < n_frames; f0 += LANES) {
        const int nl = n_frames - f0 < LANES ? n_frames - f0 : LANES;
        /* Windowed, zero-padded frames packed as complex z_n = x_2n + i x_2n+1, bit-reversed. */
        for (int l = 0; l < LANES; l++) {
            const float *fx = x + (Py_ssize_t)(f0 + (l < nl ? l : 0)) * hop;
            for (int n = 0; n < pairs; n++) {
                const int r = p->rev[n];
                re[r][l] = fx[2 * n] * wpad[2 * n];
                im[r][l] = 2 * n + 1 < win_length ? fx[2 * n + 1] * wpad[2 * n + 1] : 0.0f;
            }
            for (int n = pairs; n < m; n++) {
                const int r = p->rev[n];
                re[r][l] = 0.0f;
                im[r][l] = 0.0f;
            }
        }
        fft_batch(p, re, im, power);
        for (int mel = 0; mel < n_mels; mel++) {
            v8f vacc = {0, 0, 0, 0, 0, 0, 0, 0};
            const float *w = fb + (Py_ssize_t)mel * n_bins;
            for (int k = fb_start[mel]; k < fb_end[mel]; k++) vacc += power[k] * w[k];
            float acc[LANES], lg[LANES];
            memcpy(acc, &vacc, sizeof(acc));
            for (int l = 0; l < LANES; l++) lg[l] = log_lane(acc[l] > floor_ ? acc[l] : floor_);
            float *o = out + (Py_ssize_t)mel * out_stride + f0;
            for (int l = 0; l < nl; l++) o[l] = lg[l];
        }
    }
    free(re);
    free(im);
    free(power);
    free(wpad);
}

static PyObject *py_log_mel(PyObject *self, PyObject *args) {
    Py_buffer x, out, win, fb, fs, fe;
    int n_fft, hop, n_frames, n_mels;
    float floor_;
    Py_ssize_t out_stride = -1, out_offset = 0;
    if (!PyArg_ParseTuple(args, "y*w*y*y*y*y*iiiif|nn:log_mel", &x, &out, &win, &fb, &fs, &fe, &n_fft, &hop, &n_frames,
                          &n_mels, &floor_, &out_stride, &out_offset))
        return NULL;
    if (out_stride < 0) out_stride = n_frames;
    PyObject *ret = NULL;
    const int win_length = (int)(win.len / (Py_ssize_t)sizeof(float));
    const int n_bins = n_fft / 2 + 1;
    if (n_fft < 4 || (n_fft & (n_fft - 1)) != 0) {
        PyErr_Format(PyExc_ValueError, "n_fft must be a power of two >= 4, got %d", n_fft);
        goto done;
    }
    if (win_length > n_fft || win_length < 1 || hop < 1 || n_frames < 1 || n_mels < 1) {
        PyErr_SetString(PyExc_ValueError, "bad log-mel geometry (window, hop, frames or mels)");
        goto done;
    }
    if (x.len < ((Py_ssize_t)(n_frames - 1) * hop + win_length) * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "waveform holds %zd samples, %d frames need %zd", x.len / (Py_ssize_t)sizeof(float),
                     n_frames, (Py_ssize_t)(n_frames - 1) * hop + win_length);
        goto done;
    }
    if (out_stride < n_frames || out_offset < 0 ||
        out.len < (out_offset + (Py_ssize_t)(n_mels - 1) * out_stride + n_frames) * (Py_ssize_t)sizeof(float) ||
        fb.len < (Py_ssize_t)n_mels * n_bins * (Py_ssize_t)sizeof(float) ||
        fs.len < (Py_ssize_t)n_mels * 4 || fe.len < (Py_ssize_t)n_mels * 4) {
        PyErr_SetString(PyExc_ValueError, "output, filterbank or filter range buffers are too small");
        goto done;
    }
    for (int i = 0; i < n_mels; i++) {
        int32_t s = ((const int32_t *)fs.buf)[i], e = ((const int32_t *)fe.buf)[i];
        if (s < 0 || e > n_bins || s > e) {
            PyErr_Format(PyExc_ValueError, "mel filter %d range [%d, %d) is outside 0..%d", i, s, e, n_bins);
            goto done;
        }
    }
    const fft_plan *plan = get_plan(n_fft);
    if (!plan) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    log_mel_kernel(plan, (const float *)x.buf, (float *)out.buf + out_offset, (const float *)win.buf, win_length,
                   (const float *)fb.buf, n_bins, (const int32_t *)fs.buf, (const int32_t *)fe.buf, hop, n_frames,
                   n_mels, floor_, out_stride);
    Py_END_ALLOW_THREADS
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&win);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&fs);
    PyBuffer_Release(&fe);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* polyphase resampling (scipy.signal.resample_poly's zero-phase FIR, applied to a stream)      */
/* ------------------------------------------------------------------------------------------ */

/*
 * y[m] = sum_k h[t - j*up] x[j],  t = m*down + half_len  (h: the symmetric FIR, already scaled by up)
 * computed as a forward dot product with the polyphase bank ``hr``: hr[phase][i] = h[phase + (K-1-i)*up]
 * (zero past the filter), so y[m] = sum_i hr[t % up][i] * x[t/up - K + 1 + i].
 * ``x`` holds input samples [x_start, x_start + n_x); samples outside it are zero (the stream's
 * start, or audio that has not arrived yet). Outputs m0 .. m0 + n_out - 1 go to ``out``.
 */
static inline float resample_one(const float *x, long long x_start, Py_ssize_t n_x, const float *hr, int up, int down,
                                 int half_len, int K, long long m) {
    const long long t = m * (long long)down + half_len;
    const long long jh = t >= 0 ? t / up : -((-t + up - 1) / up); /* floor division, negative t too */
    const float *h = hr + (Py_ssize_t)(t - jh * up) * K;
    const long long lo = jh - K + 1 - x_start; /* index into x of tap 0 */
    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
        const long long j = lo + k;
        if (j >= 0 && j < n_x) acc += h[k] * x[j];
    }
    return acc;
}

EDGEMM_CLONES
static void resample_kernel(const float *x, long long x_start, Py_ssize_t n_x, const float *hr, int up, int down,
                            int half_len, int K, long long m0, Py_ssize_t n_out, float *out) {
    Py_ssize_t i = 0;
    /* 8 outputs at a time: 8 independent accumulation chains, each summing its taps in order (the
       rounding of a plain dot product, as scipy's upfirdn), so the CPU overlaps them. */
    for (; i + 8 <= n_out; i += 8) {
        const float *hp[8], *xp[8];
        int fast = 1;
        for (int l = 0; l < 8; l++) {
            const long long t = (m0 + i + l) * (long long)down + half_len;
            const long long jh = t >= 0 ? t / up : -((-t + up - 1) / up);
            const long long lo = jh - K + 1 - x_start;
            hp[l] = hr + (Py_ssize_t)(t - jh * up) * K;
            xp[l] = x + lo;
            fast &= lo >= 0 && lo + K <= n_x;
        }
        if (!fast) { /* the stream's edges: taps outside x are zeros */
            for (int l = 0; l < 8; l++) out[i + l] = resample_one(x, x_start, n_x, hr, up, down, half_len, K, m0 + i + l);
            continue;
        }
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k = 0; k < K; k++)
            for (int l = 0; l < 8; l++) acc[l] += hp[l][k] * xp[l][k];
        for (int l = 0; l < 8; l++) out[i + l] = acc[l];
    }
    for (; i < n_out; i++) out[i] = resample_one(x, x_start, n_x, hr, up, down, half_len, K, m0 + i);
}

static PyObject *py_resample(PyObject *self, PyObject *args) {
    Py_buffer x, hr, out;
    long long x_start, m0;
    int up, down, half_len, K;
    if (!PyArg_ParseTuple(args, "y*Ly*iiiiLw*:resample", &x, &x_start, &hr, &up, &down, &half_len, &K, &m0, &out))
        return NULL;
    PyObject *ret = NULL;
    if (up < 1 || down < 1 || K < 1 || half_len < 0) {
        PyErr_SetString(PyExc_ValueError, "resample: up, down and taps must be >= 1");
        goto done;
    }
    if (hr.len < (Py_ssize_t)up * K * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "resample: filter bank holds %zd bytes, %d phases x %d taps need more", hr.len, up, K);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    resample_kernel((const float *)x.buf, x_start, x.len / (Py_ssize_t)sizeof(float), (const float *)hr.buf, up, down,
                    half_len, K, m0, out.len / (Py_ssize_t)sizeof(float), (float *)out.buf);
    Py_END_ALLOW_THREADS
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&hr);
    PyBuffer_Release(&out);
    return ret;
}

static PyMethodDef methods[] = {
    {"image", py_image, METH_VARARGS,
     "image(src, out, src_h, src_w, out_h, out_w, bgr, nchw, mean3, inv_std3): fused resize+normalize+layout."},
    {"log_mel", py_log_mel, METH_VARARGS,
     "log_mel(x, out, window, fb, fb_start, fb_end, n_fft, hop, n_frames, n_mels, floor[, out_stride, out_offset]): "
     "log-mel frontend; frame f of mel row r goes to out[out_offset + r * out_stride + f]."},
    {"resample", py_resample, METH_VARARGS,
     "resample(x, x_start, bank, up, down, half_len, taps, m0, out): polyphase FIR resampling of a stream segment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_preproc", "edgemm native pre-processing kernels (GIL-free).", -1, methods,
};

PyMODINIT_FUNC PyInit__preproc(void) {
    PyObject *mod = PyModule_Create(&moduledef);
    if (mod && PyModule_AddIntConstant(mod, "LANES", LANES) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
