// Elementwise activations on f32, forward and backward. x, y, dy, dx: any shape, contiguous.
// Memory-bound: one grid-stride loop, float4 loads and stores when the pointers and the length
// allow (the arena aligns every tensor to 256 bytes), a scalar tail otherwise.
#include "cuda/activation.h"
#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

struct Relu {
  __device__ float operator()(float v) const { return v > 0.f ? v : 0.f; }
};
struct Relu6 {
  __device__ float operator()(float v) const { return fminf(fmaxf(v, 0.f), 6.f); }
};
struct Sigmoid {
  __device__ float operator()(float v) const {
    // Never exponentiates a large positive number.
    if (v >= 0.f) return 1.f / (1.f + __expf(-v));
    float e = __expf(v);
    return e / (1.f + e);
  }
};
struct ReluGrad {  // (dy, y)
  __device__ float operator()(float g, float y) const { return y > 0.f ? g : 0.f; }
};
struct Relu6Grad {  // (dy, x)
  __device__ float operator()(float g, float x) const { return (x > 0.f && x < 6.f) ? g : 0.f; }
};
struct SigmoidGrad {  // (dy, y)
  __device__ float operator()(float g, float s) const { return g * s * (1.f - s); }
};

template <class F>
__global__ void unary_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, F f) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t n4 = n / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t k = i; k < n4; k += stride) {
    float4 v = x4[k];
    y4[k] = make_float4(f(v.x), f(v.y), f(v.z), f(v.w));
  }
  for (int64_t k = n4 * 4 + i; k < n; k += stride) y[k] = f(x[k]);
}

template <class F>
__global__ void binary_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                              int64_t n, F f) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t n4 = n / 4;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t k = i; k < n4; k += stride) {
    float4 u = a4[k], v = b4[k];
    y4[k] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
  }
  for (int64_t k = n4 * 4 + i; k < n; k += stride) y[k] = f(a[k], b[k]);
}


template <class F>
void unary(Ctx& ctx, const char* name, const Tensor& x, Tensor& y, F f) {
  SAL_CHECK(aligned16(x.raw()) && aligned16(y.raw()), name, ": tensors must be 16-byte aligned");
  int64_t n = x.numel();
  if (n == 0) return;
  unary_kernel<<<grid_for((n + 3) / 4), 256, 0, stream_of(ctx)>>>(x.data<float>(), y.data<float>(), n, f);
  SAL_CUDA_LAUNCH_CHECK(name);
}

template <class F>
void binary(Ctx& ctx, const char* name, const Tensor& a, const Tensor& b, Tensor& y, F f) {
  SAL_CHECK(aligned16(a.raw()) && aligned16(b.raw()) && aligned16(y.raw()), name, ": tensors must be 16-byte aligned");
  int64_t n = a.numel();
  if (n == 0) return;
  binary_kernel<<<grid_for((n + 3) / 4), 256, 0, stream_of(ctx)>>>(a.data<float>(), b.data<float>(),
                                                                  y.data<float>(), n, f);
  SAL_CUDA_LAUNCH_CHECK(name);
}

}  // namespace

void relu(Ctx& ctx, const Tensor& x, Tensor& y) { unary(ctx, "relu", x, y, Relu{}); }
void relu_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, Tensor& dx) {
  binary(ctx, "relu_backward", dy, y, dx, ReluGrad{});
}
void relu6(Ctx& ctx, const Tensor& x, Tensor& y) { unary(ctx, "relu6", x, y, Relu6{}); }
void relu6_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dx) {
  binary(ctx, "relu6_backward", dy, x, dx, Relu6Grad{});
}
void sigmoid(Ctx& ctx, const Tensor& x, Tensor& y) { unary(ctx, "sigmoid", x, y, Sigmoid{}); }
void sigmoid_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, Tensor& dx) {
  binary(ctx, "sigmoid_backward", dy, y, dx, SigmoidGrad{});
}

}  // namespace sal::cuda
