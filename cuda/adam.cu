// CUDA kernel (f32) of the Adam / AdamW update over flat buffers: w, g, m, v: [P] ->
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   w -= lr_t m / (sqrt(v) / sqrt(1-b2^t) + eps) + lr wd w
// with the bias corrections folded into lr_t and inv_sqrt_c2 on the host (optim/adam.cpp's
// adam_constants), read from device memory by every thread (8 floats, cached).
// Purely memory-bound (read 4 floats, write 3 per parameter): one grid-stride loop, float4
// accesses when all four pointers are 16-byte aligned, scalar otherwise. The trainable range of
// a flat parameter buffer can start anywhere, so w and g may be unaligned while m and v (owned)
// are aligned; that case runs the scalar loop (still coalesced).
#include "cuda/adam.h"

#include <cstdint>

#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

// The step's constants, in the order of adam_constants (optim/adam.h).
struct AdamScalars {
  float b1, b2;        // beta1, beta2
  float c_b1, c_b2;    // 1 - beta1, 1 - beta2 (in double before rounding)
  float lr_t;          // lr / (1 - beta1^t)
  float inv_sqrt_c2;   // 1 / sqrt(1 - beta2^t)
  float eps, decay;    // eps, lr * weight_decay
};

__device__ __forceinline__ void adam_one(float& w, float g, float& m, float& v, const AdamScalars& s) {
  m = s.b1 * m + s.c_b1 * g;
  v = s.b2 * v + s.c_b2 * g * g;
  w -= s.lr_t * m / (sqrtf(v) * s.inv_sqrt_c2 + s.eps) + s.decay * w;
}

// w, g, m, v: [n]. VEC: all four 16-byte aligned (a scalar tail after n/4 float4s).
template <bool VEC>
__global__ void adam_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, const AdamScalars* __restrict__ constants) {
  const AdamScalars s = *constants;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t n4 = n / 4;
    for (int64_t k = i; k < n4; k += stride) {
      float4 wv = reinterpret_cast<float4*>(w)[k];
      const float4 gv = reinterpret_cast<const float4*>(g)[k];
      float4 mv = reinterpret_cast<float4*>(m)[k];
      float4 vv = reinterpret_cast<float4*>(v)[k];
      adam_one(wv.x, gv.x, mv.x, vv.x, s);
      adam_one(wv.y, gv.y, mv.y, vv.y, s);
      adam_one(wv.z, gv.z, mv.z, vv.z, s);
      adam_one(wv.w, gv.w, mv.w, vv.w, s);
      reinterpret_cast<float4*>(w)[k] = wv;
      reinterpret_cast<float4*>(m)[k] = mv;
      reinterpret_cast<float4*>(v)[k] = vv;
    }
    done = n4 * 4;
  }
  for (int64_t k = done + i; k < n; k += stride) {
    float wk = w[k], mk = m[k], vk = v[k];
    adam_one(wk, g[k], mk, vk, s);
    w[k] = wk;
    m[k] = mk;
    v[k] = vk;
  }
}

}  // namespace

void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const float* constants) {
  const auto* s = reinterpret_cast<const AdamScalars*>(constants);
  const int64_t n = w.numel();
  if (n == 0) return;
  float* pw = w.data<float>();
  const float* pg = g.data<float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  if (aligned16(pw) && aligned16(pg) && aligned16(pm) && aligned16(pv))
    adam_kernel<true><<<grid_for((n + 3) / 4), 256, 0, stream_of(ctx)>>>(pw, pg, pm, pv, n, s);
  else
    adam_kernel<false><<<grid_for(n), 256, 0, stream_of(ctx)>>>(pw, pg, pm, pv, n, s);
  SAL_CUDA_LAUNCH_CHECK("adam_update");
}

}  // namespace sal::cuda
