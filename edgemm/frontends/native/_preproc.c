/*
 * edgemm native pre-processing kernels (CPython extension ``edgemm.frontends.native._preproc``).
 *
 *  image(src, out, src_h, src_w, out_h, out_w, bgr, nchw, mean3, inv_std3)
 *      HxWx3 uint8 RGB frame -> fused half-pixel bilinear resize (none when the sizes match) (as cv2 INTER_LINEAR and
 *      edgemm.frontends.image.resize_bilinear) + channel order + (x - mean) * inv_std + HWC->CHW,
 *      written into a preallocated float32 buffer. mean / inv_std are in 0..255 units and in
 *      the model's channel order.
 *
 *  log_mel(x, out, window, fb, fb_start, fb_end, n_fft, hop, n_frames, n_mels, floor[, out_stride, out_offset])
 *      float32 waveform -> [n_mels, n_frames] float32 log-mel, exactly the recipe of
 *      edgemm.frontends.audio.log_mel: frames that end at the last sample (no centring), periodic Hann
 *      window, zero-padded radix-2 real FFT of size n_fft (a complex FFT of n_fft/2 points plus the
 *      split step), power, triangular mel filterbank (sparse rows fb_start..fb_end), log(max(., floor)).
 *      FFTs run 8 frames at a time in a structure-of-arrays layout so the compiler vectorises them.
 *
 *  resample(x, x_start, bank, up, down, half_len, taps, m0, out)
 *      scipy.signal.resample_poly's filter (designed once in Python, passed as a polyphase bank)
 *      applied to a segment of an endless stream: output samples m0.. from the input samples that
 *      are in ``x`` (stream indices x_start..), zero elsewhere. The streaming audio frontend
 *      (edgemm.frontends.native.StreamingLogMel) calls it with only the audio that arrived since the
 *      previous video frame.
 *
 *  top1(logits)
 *      float32 vector -> (argmax, softmax score of it): a stream's per-frame post-processing.
 *
 *  quantize(src, dst, inv_scale, zero, signed)
 *      float32 -> int8 (signed=1) or uint8 (signed=0), dst = clip(rint(src * inv_scale) + zero): the feed of an
 *      int8-input model (a LiteRT int8 artifact), one pass instead of numpy's five.
 *
 *  dequantize(src, dst, scale, zero, signed)
 *      int8 / uint8 -> float32, dst = (src - zero) * scale in float32: that model's int8 outputs.
 *
 *  StreamFrontend(...)
 *      the streaming audio frontend's state (edgemm.frontends.native.StreamingLogMel): push(samples),
 *      window(end, out); one call per video frame.
 *
 * Calls with more than ~50 us of work release the GIL while they compute (a big frame, a long block of
 * audio); per-frame calls of a few microseconds keep it: in a busy stream (capture, decoder, inference
 * and delivery threads) taking the GIL back costs more than the work (`edgemm run` on a 30 fps video +
 * 8 kHz wav: median pre-processing / inference 0.078-0.089 keeping it vs 0.116-0.173 releasing it,
 * benchmarks/bench_run_preprocess.py). The numpy code in edgemm/frontends/ is the reference;
 * tests/runtime/test_native_preproc.py and test_streaming_frontend.py hold the parity tests.
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

/* Short calls keep the GIL: in a busy process (capture, decoder, inference and delivery threads), taking
 * the GIL back after a few microseconds of work can cost far more than the work (the thread that got it
 * keeps it up to the switch interval). Calls with more work than about 50 us release it. */
#define EDGEMM_RELEASE_GIL_IF(big) PyThreadState *gil_save_ = (big) ? PyEval_SaveThread() : NULL;
#define EDGEMM_RETAKE_GIL() if (gil_save_) PyEval_RestoreThread(gil_save_);

#define EDGEMM_PI 3.14159265358979323846

/* ------------------------------------------------------------------------------------------ */
/* image                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int i0, i1;
    float w0, w1;
} tap_t;

/* Same arithmetic as edgemm.frontends.image._bilinear_taps (float64 positions, float32 weights). */
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

/* Same size in and out: every bilinear tap is (pixel, weight 1) + (neighbour, weight 0), so the
 * resize is the identity and (x - mean) * inv_std is all that is left: the same float32 operations as
 * the resize path (x * 1 + y * 0 == x exactly), without the taps. Planar (NCHW) output. */
EDGEMM_CLONES
static void image_copy_nchw(const uint8_t *src, float *out, Py_ssize_t hw, int bgr, const float mean[3],
                            const float inv_std[3]) {
    int plane[3] = {bgr ? 2 : 0, 1, bgr ? 0 : 2};
    float m[3], s[3];
    for (int c = 0; c < 3; c++) {
        m[c] = mean[plane[c]];
        s[c] = inv_std[plane[c]];
    }
    float *restrict p0 = out + (Py_ssize_t)plane[0] * hw, *restrict p1 = out + (Py_ssize_t)plane[1] * hw;
    float *restrict p2 = out + (Py_ssize_t)plane[2] * hw;
    for (Py_ssize_t i = 0; i < hw; i++) {
        p0[i] = ((float)src[3 * i] - m[0]) * s[0];
        p1[i] = ((float)src[3 * i + 1] - m[1]) * s[1];
        p2[i] = ((float)src[3 * i + 2] - m[2]) * s[2];
    }
}

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
    if (sh == oh && sw == ow && nchw) {
        {
            EDGEMM_RELEASE_GIL_IF((Py_ssize_t)oh * ow >= 256 * 256)
            image_copy_nchw((const uint8_t *)src.buf, (float *)out.buf, (Py_ssize_t)oh * ow, bgr, mean, inv_std);
            EDGEMM_RETAKE_GIL()
        }
        ret = Py_None;
        Py_INCREF(ret);
        goto done;
    }
    bilinear_taps(sh, oh, taps);
    bilinear_taps(sw, ow, taps + oh);
    {
    EDGEMM_RELEASE_GIL_IF((Py_ssize_t)oh * ow >= 128 * 128)
#ifdef EDGEMM_HAVE_AVX2_KERNEL
    if (nchw && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        image_kernel_avx2((const uint8_t *)src.buf, (Py_ssize_t)sh * sw * 3, sw, (float *)out.buf, oh, ow, taps,
                          taps + oh, bgr, mean, inv_std);
    else
#endif
    image_kernel((const uint8_t *)src.buf, (Py_ssize_t)sh * sw * 3, sw, (float *)out.buf, oh, ow, taps, taps + oh,
                 bgr, nchw, mean, inv_std);
    EDGEMM_RETAKE_GIL()
    }
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
    const int m = p->m;
    /* Scratch: on the stack up to n_fft 1024 (3 x 16 KB, warm in cache from call to call), else the heap. */
    enum { STACK_M = 512 };
    v8f stack_re[STACK_M], stack_im[STACK_M], stack_power[STACK_M + 1];
    v8f *re = stack_re, *im = stack_im, *power = stack_power;
    if (m > STACK_M) {
        if (posix_memalign((void **)&re, 32, sizeof(v8f) * (size_t)m) != 0) re = NULL;
        if (posix_memalign((void **)&im, 32, sizeof(v8f) * (size_t)m) != 0) im = NULL;
        if (posix_memalign((void **)&power, 32, sizeof(v8f) * (size_t)(m + 1)) != 0) power = NULL;
        if (!re || !im || !power) {
            free(re); free(im); free(power);
            for (int mel = 0; mel < n_mels; mel++)
                for (int f = 0; f < n_frames; f++) out[(Py_ssize_t)mel * out_stride + f] = NAN;
            return;
        }
    }
    const float *wpad = win; /* samples 2n < win_length always; 2n + 1 is checked below */
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
    if (m > STACK_M) {
        free(re);
        free(im);
        free(power);
    }
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
    {
        EDGEMM_RELEASE_GIL_IF(n_frames > LANES)
        log_mel_kernel(plan, (const float *)x.buf, (float *)out.buf + out_offset, (const float *)win.buf, win_length,
                       (const float *)fb.buf, n_bins, (const int32_t *)fs.buf, (const int32_t *)fe.buf, hop, n_frames,
                       n_mels, floor_, out_stride);
        EDGEMM_RETAKE_GIL()
    }
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
    {
        EDGEMM_RELEASE_GIL_IF(out.len / (Py_ssize_t)sizeof(float) >= 4096)
        resample_kernel((const float *)x.buf, x_start, x.len / (Py_ssize_t)sizeof(float), (const float *)hr.buf, up, down,
                        half_len, K, m0, out.len / (Py_ssize_t)sizeof(float), (float *)out.buf);
        EDGEMM_RETAKE_GIL()
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&hr);
    PyBuffer_Release(&out);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* streaming audio frontend: one object per audio input, one C call per video frame            */
/* ------------------------------------------------------------------------------------------ */

/*
 * StreamFrontend(bank, up, down, half_len, taps, window, fb, fb_start, fb_end, n_fft, hop,
 *                n_samples, n_frames, n_mels, floor, source_rate, model_rate, lazy_frames)
 * The state machine of edgemm.frontends.native.StreamingLogMel (whose Python code is the reference and
 * the fallback), in C so that a video frame's audio step is one call with the GIL released:
 *   push(samples)      source-rate float32 samples in; resampled now, STFT frames computed lazily
 *   window(end, out)   the [n_mels, n_frames] log-mel of the window that ends at resampled index
 *                      ``end`` into ``out`` (True), or False when the window is older than the frames kept
 * Buffers: x (source samples [x_base, x_end)), y (resampled [y_base, y_end), zeros before 0), mel
 * (ring of columns for frames [f_base, f_end), row stride mel_cap). Linear buffers compacted to the
 * front when full, grown (doubled) when compacting is not enough.
 */
typedef struct {
    float *a;
    Py_ssize_t cap;
    long long base, end;
} sbuf;

typedef struct {
    PyObject_HEAD
    int up, down, half, taps, same_rate, hop, wl, ns, nf, nm, n_bins, lazy;
    float floor_;
    float *bank, *win, *fb;
    int32_t *fs, *fe;
    const fft_plan *plan;
    sbuf x, y;
    float *mel;
    Py_ssize_t mel_cap;
    long long f_base, f_end;
    int busy;
} StreamFrontend;

static inline long long floordiv_ll(long long a, long long b) { /* Python's a // b for b > 0 */
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static void *copy_buffer(PyObject *obj, Py_ssize_t min_bytes, const char *what) {
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    void *p = NULL;
    if (b.len < min_bytes)
        PyErr_Format(PyExc_ValueError, "StreamFrontend: %s holds %zd bytes, needs %zd", what, b.len, min_bytes);
    else if (!(p = malloc((size_t)(b.len > 0 ? b.len : 1))))
        PyErr_NoMemory();
    else
        memcpy(p, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return p;
}

static int sbuf_init(sbuf *s, Py_ssize_t cap, long long base) {
    s->cap = cap < 16 ? 16 : cap;
    s->a = (float *)calloc((size_t)s->cap, sizeof(float));
    s->base = s->end = base;
    return s->a ? 0 : -1;
}

/* Room for n_more samples past end; samples before keep_from may be dropped (as _Buffer.reserve). */
static int sbuf_reserve(sbuf *s, long long keep_from, long long n_more) {
    if (keep_from < s->base) keep_from = s->base;
    if (keep_from > s->end) keep_from = s->end;
    const long long used = s->end - keep_from;
    if (s->end - s->base + n_more <= s->cap) return 0;
    float *src = s->a + (keep_from - s->base);
    if (used + n_more > s->cap) {
        Py_ssize_t cap = 2 * s->cap > used + n_more ? 2 * s->cap : (Py_ssize_t)(used + n_more);
        float *a = (float *)calloc((size_t)cap, sizeof(float));
        if (!a) return -1;
        memcpy(a, src, sizeof(float) * (size_t)used);
        free(s->a);
        s->a = a;
        s->cap = cap;
    } else {
        memmove(s->a, src, sizeof(float) * (size_t)used);
    }
    s->base = keep_from;
    return 0;
}

static long long sf_x_needed(const StreamFrontend *o, long long m) {
    return floordiv_ll(m * o->down + o->half, o->up) - o->taps + 1;
}

/* Resampled samples [y.end, m1) into y (x treated as zero past what was pushed). */
static int sf_resample_to(StreamFrontend *o, long long m1) {
    const long long m0 = o->y.end;
    if (m1 <= m0) return 0;
    if (sbuf_reserve(&o->y, o->f_end * o->hop, m1 - m0) < 0) return -1;
    long long lo = sf_x_needed(o, m0);
    if (lo < o->x.base) lo = o->x.base;
    const Py_ssize_t n_x = o->x.end > lo ? (Py_ssize_t)(o->x.end - lo) : 0;
    resample_kernel(o->x.a + (lo - o->x.base), lo, n_x, o->bank, o->up, o->down, o->half, o->taps, m0,
                    (Py_ssize_t)(m1 - m0), o->y.a + (m0 - o->y.base));
    return 0;
}

/* Mel frames [f0, f1) (their samples are in y) into the ring columns. */
static void sf_frames(StreamFrontend *o, long long f0, long long f1) {
    if (f1 <= f0) return;
    log_mel_kernel(o->plan, o->y.a + (f0 * o->hop - o->y.base), o->mel + (f0 - o->f_base), o->win, o->wl, o->fb,
                   o->n_bins, o->fs, o->fe, o->hop, (int)(f1 - f0), o->nm, o->floor_, o->mel_cap);
}

/* Room in the ring for frames up to ``last`` (inclusive), dropping frames before ``keep_from``. */
static int sf_make_room(StreamFrontend *o, long long last, long long keep_from) {
    if (last - o->f_base < o->mel_cap) return 0;
    if (keep_from > o->f_end) keep_from = o->f_end;
    if (keep_from < o->f_base) keep_from = o->f_base;
    const long long used = o->f_end - keep_from, off = keep_from - o->f_base;
    if (last - keep_from >= o->mel_cap) {
        Py_ssize_t cap = (Py_ssize_t)(2 * (last - keep_from + 1));
        float *m = (float *)calloc((size_t)cap * (size_t)o->nm, sizeof(float));
        if (!m) return -1;
        for (int r = 0; r < o->nm; r++)
            memcpy(m + (Py_ssize_t)r * cap, o->mel + (Py_ssize_t)r * o->mel_cap + off, sizeof(float) * (size_t)used);
        free(o->mel);
        o->mel = m;
        o->mel_cap = cap;
    } else {
        for (int r = 0; r < o->nm; r++)
            memmove(o->mel + (Py_ssize_t)r * o->mel_cap, o->mel + (Py_ssize_t)r * o->mel_cap + off, sizeof(float) * (size_t)used);
    }
    o->f_base = keep_from;
    return 0;
}

/* Compute the frames whose samples are all in. */
static int sf_advance(StreamFrontend *o) {
    const long long ready = floordiv_ll(o->y.end - o->wl, o->hop) + 1;
    if (ready <= o->f_end) return 0;
    const long long keep = ready - 2 * (long long)o->nf;
    if (sf_make_room(o, ready - 1, o->f_end < keep ? o->f_end : keep) < 0) return -1;
    sf_frames(o, o->f_end, ready);
    o->f_end = ready;
    return 0;
}

static int sf_push(StreamFrontend *o, const float *x, Py_ssize_t n) {
    if (o->same_rate) {
        if (sbuf_reserve(&o->y, o->f_end * o->hop, n) < 0) return -1;
        memcpy(o->y.a + (o->y.end - o->y.base), x, sizeof(float) * (size_t)n);
        o->y.end += n;
    } else {
        if (sbuf_reserve(&o->x, sf_x_needed(o, o->y.end), n) < 0) return -1;
        memcpy(o->x.a + (o->x.end - o->x.base), x, sizeof(float) * (size_t)n);
        o->x.end += n;
        const long long ready = -floordiv_ll(o->half - o->x.end * o->up, o->down); /* outputs whose taps are all in */
        if (ready > o->y.end) {
            if (sf_resample_to(o, ready) < 0) return -1;
            o->y.end = ready;
        }
    }
    if (floordiv_ll(o->y.end - o->wl, o->hop) + 1 - o->f_end >= o->lazy) return sf_advance(o);
    return 0;
}

/* 1: written, 0: older than the frames kept, -1: out of memory. */
static int sf_window(StreamFrontend *o, long long end, float *out) {
    const long long first = floordiv_ll(end - o->ns, o->hop), last = first + o->nf - 1;
    if (first < o->f_base) return 0;
    if (last >= o->f_end) { /* one batch; frames whose audio is not all in count it as silence, not kept */
        if (sf_make_room(o, last, first) < 0) return -1;
        const long long need = last * o->hop + o->wl;
        if (need > o->y.end) {
            if (sbuf_reserve(&o->y, o->f_end * o->hop, need - o->y.end) < 0) return -1;
            long long stop = o->y.end;
            if (!o->same_rate) { /* the offline resampler's output of the stream so far: ceil(n * up / down) */
                const long long have = -floordiv_ll(-o->x.end * o->up, o->down);
                const long long lim = need < have ? need : have;
                if (lim > stop) stop = lim;
                if (sf_resample_to(o, stop) < 0) return -1; /* provisional: y.end does not move */
            }
            memset(o->y.a + (stop - o->y.base), 0, sizeof(float) * (size_t)(need - stop));
        }
        sf_frames(o, o->f_end, last + 1);
        const long long ready = floordiv_ll(o->y.end - o->wl, o->hop) + 1;
        const long long kept = last + 1 < ready ? last + 1 : ready;
        if (kept > o->f_end) o->f_end = kept;
    }
    const Py_ssize_t c = (Py_ssize_t)(first - o->f_base);
    for (int r = 0; r < o->nm; r++)
        memcpy(out + (Py_ssize_t)r * o->nf, o->mel + (Py_ssize_t)r * o->mel_cap + c, sizeof(float) * (size_t)o->nf);
    return 1;
}

static int sf_enter(StreamFrontend *o) {
    if (o->busy) {
        PyErr_SetString(PyExc_RuntimeError, "StreamingLogMel is in use by another thread (use one per thread)");
        return -1;
    }
    o->busy = 1;
    return 0;
}

static PyObject *sf_py_push(StreamFrontend *o, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (b.itemsize != 4 || (b.format && strcmp(b.format, "f") != 0)) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_TypeError, "push: samples must be contiguous float32");
        return NULL;
    }
    if (sf_enter(o) < 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    int rc;
    {
        EDGEMM_RELEASE_GIL_IF(b.len / 4 >= 4096)
        rc = sf_push(o, (const float *)b.buf, b.len / 4);
        EDGEMM_RETAKE_GIL()
    }
    o->busy = 0;
    PyBuffer_Release(&b);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *sf_py_window(StreamFrontend *o, PyObject *args) {
    long long end;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "Lw*:window", &end, &out)) return NULL;
    if (out.len < (Py_ssize_t)o->nm * o->nf * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "window: out holds %zd bytes, %d x %d float32 need more", out.len, o->nm, o->nf);
        PyBuffer_Release(&out);
        return NULL;
    }
    if (floordiv_ll(end - o->ns, o->hop) * o->hop != end - o->ns) {
        PyErr_Format(PyExc_ValueError, "window end %lld is not on the hop grid (use hop_aligned_end)", end);
        PyBuffer_Release(&out);
        return NULL;
    }
    if (sf_enter(o) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    int rc;
    {
        EDGEMM_RELEASE_GIL_IF(floordiv_ll(end - o->ns, o->hop) + o->nf - o->f_end > LANES)
        rc = sf_window(o, end, (float *)out.buf);
        EDGEMM_RETAKE_GIL()
    }
    o->busy = 0;
    PyBuffer_Release(&out);
    if (rc < 0) return PyErr_NoMemory();
    return PyBool_FromLong(rc);
}

static PyObject *sf_py_state(StreamFrontend *o, PyObject *unused) {
    return Py_BuildValue("{s:n,s:n,s:n,s:L,s:L,s:L,s:L}", "x_capacity", o->x.cap, "y_capacity", o->y.cap,
                         "mel_capacity", o->mel_cap, "f_base", o->f_base, "f_end", o->f_end, "y_end", o->y.end,
                         "samples_in", o->same_rate ? o->y.end : o->x.end);
}

static void sf_dealloc(StreamFrontend *o) {
    free(o->bank); free(o->win); free(o->fb); free(o->fs); free(o->fe);
    free(o->x.a); free(o->y.a); free(o->mel);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static int sf_init(StreamFrontend *o, PyObject *args, PyObject *kw) {
    PyObject *bank, *win, *fb, *fs, *fe;
    int n_fft, source_rate, model_rate;
    if (!PyArg_ParseTuple(args, "OiiiiOOOOiiiiifiii:StreamFrontend", &bank, &o->up, &o->down, &o->half, &o->taps, &win,
                          &fb, &fs, &fe, &n_fft, &o->hop, &o->ns, &o->nf, &o->nm, &o->floor_, &source_rate, &model_rate,
                          &o->lazy))
        return -1;
    if (o->bank) { /* __init__ twice: not supported */
        PyErr_SetString(PyExc_RuntimeError, "StreamFrontend is initialised once");
        return -1;
    }
    if (o->up < 1 || o->down < 1 || o->taps < 1 || o->half < 0 || o->hop < 1 || o->nf < 1 || o->nm < 1 || o->ns < 1 ||
        o->lazy < 1 || source_rate < 1 || model_rate < 1 || n_fft < 4 || (n_fft & (n_fft - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "StreamFrontend: bad geometry");
        return -1;
    }
    o->same_rate = o->up == 1 && o->down == 1;
    o->n_bins = n_fft / 2 + 1;
    Py_buffer wb;
    if (PyObject_GetBuffer(win, &wb, PyBUF_C_CONTIGUOUS) < 0) return -1;
    o->wl = (int)(wb.len / 4);
    PyBuffer_Release(&wb);
    if (o->wl < 1 || o->wl > n_fft) {
        PyErr_SetString(PyExc_ValueError, "StreamFrontend: window longer than n_fft");
        return -1;
    }
    if (!(o->bank = copy_buffer(bank, (Py_ssize_t)o->up * o->taps * 4, "bank")) ||
        !(o->win = copy_buffer(win, (Py_ssize_t)o->wl * 4, "window")) ||
        !(o->fb = copy_buffer(fb, (Py_ssize_t)o->nm * o->n_bins * 4, "filterbank")) ||
        !(o->fs = copy_buffer(fs, (Py_ssize_t)o->nm * 4, "filter starts")) ||
        !(o->fe = copy_buffer(fe, (Py_ssize_t)o->nm * 4, "filter ends")))
        return -1;
    for (int i = 0; i < o->nm; i++)
        if (o->fs[i] < 0 || o->fe[i] > o->n_bins || o->fs[i] > o->fe[i]) {
            PyErr_Format(PyExc_ValueError, "mel filter %d range [%d, %d) is outside 0..%d", i, o->fs[i], o->fe[i], o->n_bins);
            return -1;
        }
    if (!(o->plan = get_plan(n_fft))) {
        PyErr_NoMemory();
        return -1;
    }
    /* zeros before the stream: whole windows of silence */
    const long long pad = (long long)((o->wl + o->hop - 1) / o->hop) * o->hop + (long long)((o->ns + o->hop - 1) / o->hop) * o->hop;
    o->mel_cap = 4 * (Py_ssize_t)o->nf + 64;
    if (sbuf_init(&o->x, 4 * (Py_ssize_t)source_rate, 0) < 0 || sbuf_init(&o->y, 4 * (Py_ssize_t)model_rate + pad, -pad) < 0 ||
        !(o->mel = (float *)calloc((size_t)o->mel_cap * (size_t)o->nm, sizeof(float)))) {
        PyErr_NoMemory();
        return -1;
    }
    o->y.end = 0;
    o->f_base = o->f_end = floordiv_ll(-pad, o->hop);
    if (sf_advance(o) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyMethodDef sf_methods[] = {
    {"push", (PyCFunction)sf_py_push, METH_O, "push(samples): float32 source-rate samples in."},
    {"window", (PyCFunction)sf_py_window, METH_VARARGS, "window(end, out) -> bool: the log-mel window ending at end."},
    {"state", (PyCFunction)sf_py_state, METH_NOARGS, "state() -> dict: buffer capacities and stream positions."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StreamFrontendType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "edgemm.frontends.native._preproc.StreamFrontend",
    .tp_basicsize = sizeof(StreamFrontend),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The streaming audio frontend's state machine (see edgemm.frontends.native.StreamingLogMel).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sf_init,
    .tp_dealloc = (destructor)sf_dealloc,
    .tp_methods = sf_methods,
};

/* ------------------------------------------------------------------------------------------ */
/* post-processing                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* top1(logits) -> (index, score): numpy's argmax (the first maximum; the first NaN if any) and the
 * softmax score of that class, 1 / sum(exp(l - l[index])), summed in double. */
static PyObject *py_top1(PyObject *self, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*:top1", &b)) return NULL;
    const Py_ssize_t n = b.len / (Py_ssize_t)sizeof(float);
    const float *l = (const float *)b.buf;
    if (n < 1) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "top1: empty logits");
        return NULL;
    }
    Py_ssize_t best = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (isnan(l[k])) {
            best = k;
            break;
        }
        if (l[k] > l[best]) best = k;
    }
    double sum = 0.0;
    for (Py_ssize_t k = 0; k < n; k++) sum += exp((double)l[k] - (double)l[best]);
    PyBuffer_Release(&b);
    return Py_BuildValue("(nd)", best, 1.0 / sum);
}

/* quantize(src float32, dst int8|uint8, inv_scale, zero, signed): dst[i] = clip(rint(src[i] * inv_scale) + zero).
 * numpy's reference (Int8Codec's fallback in edgemm.frontends.native) rounds half to even, adds the zero-point and
 * clips; here the product is clipped first to [lo - zero, hi - zero] (integers, so the same result) and then
 * rounded with the 1.5 * 2^23 trick, which rounds half to even in the default rounding mode and, unlike
 * nearbyintf without SSE4.1, vectorises. A NaN feed becomes lo (numpy's cast of NaN is undefined). */
/* The loops take their constants as arguments: inside py_quantize they would be locals whose address
 * PyArg_ParseTuple took, which a char store may alias, and the loop would not vectorise. */
#define QUANTIZE_LOOP(NAME, T)                                                                            \
    static void NAME(const float *restrict x, T *restrict q, Py_ssize_t n, float inv, float zero, float lo, float hi) { \
        const float magic = 12582912.0f; /* 1.5 * 2^23 */                                                 \
        for (Py_ssize_t i = 0; i < n; i++) {                                                              \
            float v = x[i] * inv;                                                                         \
            v = v > lo ? v : lo;                                                                          \
            v = v < hi ? v : hi;                                                                          \
            v = (v + magic) - magic;                                                                      \
            q[i] = (T)(int)(v + zero);                                                                    \
        }                                                                                                 \
    }
QUANTIZE_LOOP(quantize_s8, signed char)
QUANTIZE_LOOP(quantize_u8, unsigned char)

#define DEQUANTIZE_LOOP(NAME, T)                                                                          \
    static void NAME(const T *restrict q, float *restrict y, Py_ssize_t n, float scale, float zero) {    \
        for (Py_ssize_t i = 0; i < n; i++) y[i] = ((float)q[i] - zero) * scale;                           \
    }
DEQUANTIZE_LOOP(dequantize_s8, signed char)
DEQUANTIZE_LOOP(dequantize_u8, unsigned char)

static PyObject *py_quantize(PyObject *self, PyObject *args) {
    Py_buffer s, d;
    float inv, zero;
    int is_signed;
    if (!PyArg_ParseTuple(args, "y*w*ffp:quantize", &s, &d, &inv, &zero, &is_signed)) return NULL;
    const Py_ssize_t n = s.len / (Py_ssize_t)sizeof(float);
    if (d.len != n) {
        PyBuffer_Release(&s);
        PyBuffer_Release(&d);
        PyErr_Format(PyExc_ValueError, "quantize: %zd float32 values into %zd bytes", n, d.len);
        return NULL;
    }
    if (is_signed)
        quantize_s8((const float *)s.buf, (signed char *)d.buf, n, inv, zero, -128.0f - zero, 127.0f - zero);
    else
        quantize_u8((const float *)s.buf, (unsigned char *)d.buf, n, inv, zero, 0.0f - zero, 255.0f - zero);
    PyBuffer_Release(&s);
    PyBuffer_Release(&d);
    Py_RETURN_NONE;
}

/* dequantize(src int8|uint8, dst float32, scale, zero, signed): dst[i] = ((float)src[i] - zero) * scale. */
static PyObject *py_dequantize(PyObject *self, PyObject *args) {
    Py_buffer s, d;
    float scale, zero;
    int is_signed;
    if (!PyArg_ParseTuple(args, "y*w*ffp:dequantize", &s, &d, &scale, &zero, &is_signed)) return NULL;
    const Py_ssize_t n = s.len;
    if (d.len != n * (Py_ssize_t)sizeof(float)) {
        PyBuffer_Release(&s);
        PyBuffer_Release(&d);
        PyErr_Format(PyExc_ValueError, "dequantize: %zd bytes into %zd float32 values", n, d.len / (Py_ssize_t)sizeof(float));
        return NULL;
    }
    if (is_signed)
        dequantize_s8((const signed char *)s.buf, (float *)d.buf, n, scale, zero);
    else
        dequantize_u8((const unsigned char *)s.buf, (float *)d.buf, n, scale, zero);
    PyBuffer_Release(&s);
    PyBuffer_Release(&d);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"image", py_image, METH_VARARGS,
     "image(src, out, src_h, src_w, out_h, out_w, bgr, nchw, mean3, inv_std3): fused resize+normalize+layout."},
    {"log_mel", py_log_mel, METH_VARARGS,
     "log_mel(x, out, window, fb, fb_start, fb_end, n_fft, hop, n_frames, n_mels, floor[, out_stride, out_offset]): "
     "log-mel frontend; frame f of mel row r goes to out[out_offset + r * out_stride + f]."},
    {"resample", py_resample, METH_VARARGS,
     "resample(x, x_start, bank, up, down, half_len, taps, m0, out): polyphase FIR resampling of a stream segment."},
    {"top1", py_top1, METH_VARARGS,
     "top1(logits): (index of the first maximum, softmax score of it) of a float32 vector."},
    {"quantize", py_quantize, METH_VARARGS,
     "quantize(src, dst, inv_scale, zero, signed): float32 -> int8/uint8, clip(rint(src * inv_scale) + zero)."},
    {"dequantize", py_dequantize, METH_VARARGS,
     "dequantize(src, dst, scale, zero, signed): int8/uint8 -> float32, (src - zero) * scale."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_preproc", "edgemm native pre-processing kernels (GIL-free).", -1, methods,
};

PyMODINIT_FUNC PyInit__preproc(void) {
    if (PyType_Ready(&StreamFrontendType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod) return NULL;
    Py_INCREF(&StreamFrontendType);
    if (PyModule_AddIntConstant(mod, "LANES", LANES) < 0 ||
        PyModule_AddObject(mod, "StreamFrontend", (PyObject *)&StreamFrontendType) < 0) {
        Py_DECREF(&StreamFrontendType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
