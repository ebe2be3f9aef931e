#include "cuda/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/error.h"

#define SAL_NCCL_CHECK(call)                                                                        \
  do {                                                                                              \
    ncclResult_t sal_r_ = (call);                                                                   \
    if (sal_r_ != ncclSuccess) ::sal::fail(#call, " failed: ", ncclGetErrorString(sal_r_), " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)

namespace sal::cuda {

struct NcclComm {
  ncclComm_t comm = nullptr;
};

namespace {

void write_id(const ncclUniqueId& id, const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(id.internal, sizeof(id.internal));
    SAL_CHECK(out.good(), "data parallel: cannot write the NCCL id to ", tmp);
  }
  std::filesystem::rename(tmp, path);
}

ncclUniqueId read_id(const std::string& path, int rank, double timeout_s) {
  const auto t0 = std::chrono::steady_clock::now();
  ncclUniqueId id{};
  for (;;) {
    std::ifstream in(path, std::ios::binary);
    if (in.good()) {
      in.read(id.internal, sizeof(id.internal));
      SAL_CHECK(in.gcount() == static_cast<std::streamsize>(sizeof(id.internal)), path, ": rank ", rank,
                " read a truncated NCCL id (", in.gcount(), " of ", sizeof(id.internal), " bytes)");
      return id;
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    SAL_CHECK(waited < timeout_s, path, ": rank ", rank, " waited ", timeout_s,
              " s for rank 0 to write the NCCL id (is SAL_DIST_INIT_FILE on a filesystem every rank sees, and "
              "was the file of an earlier run removed?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

NcclComm* nccl_init(int world, int rank, const std::string& id_file, double timeout_s) {
  SAL_CHECK(world >= 1 && rank >= 0 && rank < world, "data parallel: rank ", rank, " of world size ", world);
  ncclUniqueId id{};
  if (rank == 0) {
    SAL_NCCL_CHECK(ncclGetUniqueId(&id));
    write_id(id, id_file);
  } else {
    id = read_id(id_file, rank, timeout_s);
  }
  auto* c = new NcclComm;
  const ncclResult_t r = ncclCommInitRank(&c->comm, world, id, rank);
  if (r != ncclSuccess) {
    delete c;
    fail("ncclCommInitRank (rank ", rank, " of ", world, ", id from ", id_file, ") failed: ", ncclGetErrorString(r));
  }
  return c;
}

void nccl_destroy(NcclComm* comm) {
  if (!comm) return;
  if (comm->comm) ncclCommDestroy(comm->comm);
  delete comm;
}

void nccl_all_reduce_avg(NcclComm* comm, float* data, size_t count, void* stream) {
  SAL_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclAvg, comm->comm, static_cast<cudaStream_t>(stream)));
}

void nccl_all_reduce_max(NcclComm* comm, float* data, size_t count, void* stream) {
  SAL_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclMax, comm->comm, static_cast<cudaStream_t>(stream)));
}

void nccl_broadcast(NcclComm* comm, float* data, size_t count, int root, void* stream) {
  SAL_NCCL_CHECK(ncclBroadcast(data, data, count, ncclFloat32, root, comm->comm, static_cast<cudaStream_t>(stream)));
}

}  // namespace sal::cuda
