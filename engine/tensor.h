// Tensor: a contiguous NCHW (row-major) block of one dtype on one device.
// A tensor either owns its memory (shared, reference counted) or is a view into memory that
// something else owns: a workspace arena, a flat parameter buffer, a memory-mapped file.
// Making a view never allocates. Copies between devices happen only through the explicit
// calls to(), copy_from() and values(); nothing here copies behind the caller's back.
#pragma once
#include <memory>
#include <vector>

#include "engine/dtype.h"
#include "engine/shape.h"

namespace sal {

class Tensor {
 public:
  Tensor() = default;

  // Owning allocation, uninitialised (256-byte aligned on both devices).
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  // Non-owning view of memory that outlives the tensor.
  static Tensor view(void* data, const Shape& shape, DType dtype, Device device);
  // CPU tensor holding a copy of values converted to dtype.
  static Tensor from_values(const std::vector<double>& values, const Shape& shape, DType dtype = DType::F32);
  static Tensor from_labels(const std::vector<int32_t>& labels);

  bool defined() const { return data_ != nullptr || shape_.nd > 0; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.nd; }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool on_cuda() const { return device_ == Device::CUDA; }
  bool owns_memory() const { return owner_ != nullptr; }

  void* raw() const { return data_; }
  // Typed pointer; throws when T does not match the dtype.
  template <class T>
  T* data() const {
    SAL_CHECK(dtype_of<T>() == dtype_, "tensor ", shape_.str(), " is ", dtype_name(dtype_), ", accessed as ",
              dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_);
  }

  // Same memory, new shape with the same element count.
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, begin+count) of the first dimension, as a view.
  Tensor slice0(int64_t begin, int64_t count) const;

  // Explicit copies.
  Tensor to(Device device) const;
  Tensor host() const;  // this tensor when it is on the CPU, else to(Device::CPU): for readers of host memory
  Tensor to(DType dtype) const;  // dtype conversion on the CPU; CUDA conversion is a kernel of the CUDA backend
  Tensor clone() const;
  void copy_from(const Tensor& src);  // same shape and dtype, any devices
  void fill(double value);            // CPU only
  void zero();                        // either device

  // Host copy of all elements as doubles (tests, logging).
  std::vector<double> values() const;
  double item() const;  // single-element tensor

  std::string desc() const;  // "f32[2,3,4,4]@cpu"

 private:
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
};

// Raw device memory management used by Tensor and the arena. CUDA variants throw when the
// build has no CUDA or no device is present.
void* device_alloc(Device device, size_t bytes);
void device_free(Device device, void* ptr);
void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void device_memset_zero(Device device, void* ptr, size_t bytes);
bool cuda_available();  // built with CUDA and at least one device present

}  // namespace sal
