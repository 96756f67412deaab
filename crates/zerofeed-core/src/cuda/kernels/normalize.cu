// zerofeed's device kernel: uint8 HWC samples -> normalized float32 / float16 / bfloat16,
// optionally transposed to CHW, in one pass. `normalize.ptx` (next to this file) is what
// ships: PTX ISA 7.0 for sm_52, which every driver since CUDA 11.0 JIT-compiles for the
// GPU at hand (sm_90 included), so users need no CUDA toolkit.
//
// Regenerate / check:  nvcc -ptx -arch=compute_52 -O3 normalize.cu -o /tmp/normalize.ptx
// The shipped PTX was derived from NVRTC's output for this file (compute_75), with the
// header lowered to `.version 7.0` / `.target sm_52` (it uses no newer instruction:
// the f16 conversion is `cvt.rn.f16.f32`, and bfloat16 rounding is done with integer ops
// because `cvt.rn.bf16.f32` needs sm_80), then checked with `ptxas -arch=sm_75/sm_90`.
//
// Parameters:
//   src   uint8, `total` elements: n samples of hw pixels of c channels, HWC, packed
//   dst   `total` elements of `kind` (0 float32, 1 float16, 2 bfloat16), HWC or CHW
//   coef  2*c floats: a[0..c) then b[0..c); out = x * a[ch] + b[ch]
//         (a = scale / std, b = -mean / std: the CPU path's fused form of (x*scale-mean)/std)
//   chw   nonzero: dst is [n][c][hw], else [n][hw][c]
// Element counts fit in 31 bits (the host checks), so the grid-stride index never wraps.

extern "C" __global__ void zf_normalize(const unsigned char* __restrict__ src,
                                        void* __restrict__ dst,
                                        const float* __restrict__ coef,
                                        unsigned int total, unsigned int hw, unsigned int c,
                                        unsigned int chw, unsigned int kind) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += blockDim.x * gridDim.x) {
        unsigned int ch, s;
        if (chw) {
            unsigned int per = hw * c;
            unsigned int n = i / per;
            unsigned int r = i - n * per;
            ch = r / hw;
            unsigned int p = r - ch * hw;
            s = n * per + p * c + ch;
        } else {
            ch = i % c;
            s = i;
        }
        float y = fmaf((float)src[s], coef[ch], coef[c + ch]);
        if (kind == 0) {
            ((float*)dst)[i] = y;
        } else if (kind == 1) {
            unsigned short h;
            asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(y));
            ((unsigned short*)dst)[i] = h;
        } else {
            unsigned int b = __float_as_uint(y);
            unsigned short out;
            if ((b & 0x7fffffffu) > 0x7f800000u) {
                out = (unsigned short)((b >> 16) | 0x40u);  // quiet NaN, as half::bf16 does
            } else {
                out = (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);  // round to nearest even
            }
            ((unsigned short*)dst)[i] = out;
        }
    }
}
