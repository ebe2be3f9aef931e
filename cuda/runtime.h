// Thin, checked wrappers over the CUDA runtime used by the engine's tensors and arenas.
// Every call is checked; a failure names the call, the file and the line.
#pragma once
#include <cstddef>

namespace sal::cuda {

int device_count();  // 0 when no driver or no device (never throws)
void* malloc_device(size_t bytes);
void free_device(void* ptr);
void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
void memset_zero(void* ptr, size_t bytes);
// The same queued on a stream (cudaStream_t; null: the legacy default stream): capturable in a graph.
void memset_zero_async(void* ptr, size_t bytes, void* stream);
void copy_device_async(void* dst, const void* src, size_t bytes, void* stream);  // device to device
void synchronize();

}  // namespace sal::cuda
