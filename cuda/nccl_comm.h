// NCCL, wrapped in one translation unit (cuda/nccl_comm.cpp, built when CMake finds NCCL:
// SAL_WITH_NCCL). Plain C++ header. All calls are float32, in place, asynchronous on `stream`.
#pragma once
#include <cstddef>
#include <string>

namespace sal::cuda {

struct NcclComm;  // ncclComm_t

// Joins a communicator of `world` ranks. Rank 0 makes the NCCL unique id and writes it to
// `id_file` (atomically: a temporary file, then rename); the other ranks wait up to `timeout_s`
// seconds for the file and read it. Errors name the file and the rank.
NcclComm* nccl_init(int world, int rank, const std::string& id_file, double timeout_s);
void nccl_destroy(NcclComm* comm);  // null is fine
// The mean over the ranks (ncclAvg, NCCL >= 2.10: the sum and the division in one pass).
void nccl_all_reduce_avg(NcclComm* comm, float* data, size_t count, void* stream);
void nccl_all_reduce_max(NcclComm* comm, float* data, size_t count, void* stream);
void nccl_broadcast(NcclComm* comm, float* data, size_t count, int root, void* stream);

}  // namespace sal::cuda
