#include "engine/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/host_io_guard.h"

#ifdef SAL_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace sal {

namespace {

#ifndef SAL_WITH_CUDA
[[noreturn]] void no_cuda(const char* what) {
  fail(what, ": this build has no CUDA backend (configure with nvcc on PATH to enable it)");
}
#endif

template <class T>
void convert_from_double(const double* src, void* dst, int64_t n) {
  T* out = static_cast<T*>(dst);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(static_cast<float>(src[i]));
}

template <>
void convert_from_double<double>(const double* src, void* dst, int64_t n) {
  if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(double));  // an empty vector's data() may be null
}

template <>
void convert_from_double<int32_t>(const double* src, void* dst, int64_t n) {
  int32_t* out = static_cast<int32_t*>(dst);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(std::llround(src[i]));
}

void from_double(const double* src, void* dst, DType t, int64_t n) {
  switch (t) {
    case DType::F32: return convert_from_double<float>(src, dst, n);
    case DType::F64: return convert_from_double<double>(src, dst, n);
    case DType::BF16: return convert_from_double<bf16>(src, dst, n);
    case DType::I32: return convert_from_double<int32_t>(src, dst, n);
  }
}

void to_double(const void* src, DType t, double* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    switch (t) {
      case DType::F32: dst[i] = static_cast<const float*>(src)[i]; break;
      case DType::F64: dst[i] = static_cast<const double*>(src)[i]; break;
      case DType::BF16: dst[i] = static_cast<float>(static_cast<const bf16*>(src)[i]); break;
      case DType::I32: dst[i] = static_cast<const int32_t*>(src)[i]; break;
    }
  }
}

}  // namespace

void* device_alloc(Device device, size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (device == Device::CPU) {
    // 256-byte alignment, like cudaMalloc, so arena offsets keep the same alignment on both devices.
    size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded);
    SAL_CHECK(p, "out of host memory allocating ", bytes, " bytes");
    return p;
  }
#ifdef SAL_WITH_CUDA
  return cuda::malloc_device(bytes);
#else
  no_cuda("device_alloc");
#endif
}

void device_free(Device device, void* ptr) {
  if (!ptr) return;
  if (device == Device::CPU) {
    std::free(ptr);
    return;
  }
#ifdef SAL_WITH_CUDA
  cuda::free_device(ptr);
#endif
}

void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef SAL_WITH_CUDA
  cuda::copy(dst, dst_dev == Device::CUDA, src, src_dev == Device::CUDA, bytes);
#else
  no_cuda("device_copy");
#endif
}

void device_memset_zero(Device device, void* ptr, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::CPU) {
    std::memset(ptr, 0, bytes);
    return;
  }
#ifdef SAL_WITH_CUDA
  cuda::memset_zero(ptr, bytes);
#else
  no_cuda("device_memset_zero");
#endif
}

bool cuda_available() {
#ifdef SAL_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  void* p = device_alloc(device, t.nbytes());
  t.owner_ = std::shared_ptr<void>(p, [device](void* q) { device_free(device, q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::view(void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::from_values(const std::vector<double>& values, const Shape& shape, DType dtype) {
  SAL_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_values: ", values.size(),
            " values for shape ", shape.str());
  Tensor t = empty(shape, dtype, Device::CPU);
  from_double(values.data(), t.data_, dtype, shape.numel());
  return t;
}

Tensor Tensor::from_labels(const std::vector<int32_t>& labels) {
  Tensor t = empty(Shape{static_cast<int64_t>(labels.size())}, DType::I32, Device::CPU);
  if (!labels.empty()) std::memcpy(t.data_, labels.data(), labels.size() * sizeof(int32_t));
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  SAL_CHECK(shape.numel() == numel(), "reshape: ", shape_.str(), " (", numel(), " elements) to ", shape.str(), " (",
            shape.numel(), " elements)");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t count) const {
  SAL_CHECK(ndim() >= 1 && begin >= 0 && count >= 0 && begin + count <= dim(0), "slice0: rows [", begin, ", ",
            begin + count, ") of ", shape_.str());
  Tensor t = *this;
  t.shape_[0] = count;
  int64_t row = dim(0) ? numel() / dim(0) : 0;
  t.data_ = static_cast<char*>(data_) + static_cast<size_t>(begin * row) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::to(Device device) const {
  check_no_host_io("Tensor::to (an owning copy)");
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::host() const { return device_ == Device::CPU ? *this : to(Device::CPU); }

Tensor Tensor::to(DType dtype) const {
  SAL_CHECK(device_ == Device::CPU, "Tensor::to(", dtype_name(dtype), "): ", desc(),
            " is on CUDA; convert with the CUDA backend's cast op");
  if (dtype == dtype_) return clone();
  std::vector<double> v = values();
  return from_values(v, shape_, dtype);
}

Tensor Tensor::clone() const { return to(device_); }

void Tensor::copy_from(const Tensor& src) {
  SAL_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "copy_from: ", src.desc(), " into ", desc());
  // Inside a step even a same-device copy_from is refused: it runs on the legacy default stream, which a
  // CUDA graph capture cannot contain (Ctx::copy queues it on the step's stream).
  check_no_host_io(src.device_ != device_ ? "copy_from between devices" : "Tensor::copy_from (use Ctx::copy)");
  device_copy(data_, device_, src.data_, src.device_, nbytes());
}

void Tensor::fill(double value) {
  SAL_CHECK(device_ == Device::CPU, "fill: ", desc(), " is not on the CPU");
  int64_t n = numel();
  switch (dtype_) {
    case DType::F32: std::fill_n(static_cast<float*>(data_), n, static_cast<float>(value)); break;
    case DType::F64: std::fill_n(static_cast<double*>(data_), n, value); break;
    case DType::BF16: std::fill_n(static_cast<bf16*>(data_), n, bf16(static_cast<float>(value))); break;
    case DType::I32: std::fill_n(static_cast<int32_t*>(data_), n, static_cast<int32_t>(std::llround(value))); break;
  }
}

void Tensor::zero() {
  check_no_host_io("Tensor::zero (the legacy default stream; use Ctx::zero)");
  device_memset_zero(device_, data_, nbytes());
}

std::vector<double> Tensor::values() const {
  check_no_host_io("Tensor::values() / item()");
  std::vector<double> out(static_cast<size_t>(numel()));
  if (device_ == Device::CPU) {
    to_double(data_, dtype_, out.data(), numel());
  } else {
    Tensor host = to(Device::CPU);
    to_double(host.data_, dtype_, out.data(), numel());
  }
  return out;
}

double Tensor::item() const {
  SAL_CHECK(numel() == 1, "item: ", desc(), " has ", numel(), " elements");
  return values()[0];
}

std::string Tensor::desc() const { return cat(dtype_name(dtype_), shape_.str(), "@", device_name(device_)); }

}  // namespace sal
