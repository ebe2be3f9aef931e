// Data-parallel training: one process per GPU (or several CPU processes on one node), launched like
// torchrun (or mpirun with these set):
//   WORLD_SIZE   number of processes (default 1)
//   RANK         this process, 0 .. WORLD_SIZE-1 (default 0)
//   LOCAL_RANK   its GPU on this node (default RANK)
//   SAL_DIST_INIT_FILE  a file path every rank can see (node-local for one node, a shared filesystem
//                for several GPU nodes): on CUDA rank 0 writes the NCCL id there and the others read
//                it; on the CPU it is the shared-memory file of the collectives (engine/cpu/shm_comm.h).
//                Required when WORLD_SIZE > 1.
//   SAL_DIST_INIT_TIMEOUT_S  how long a rank waits for the others to join (default 300)
// Every rank computes the gradient of its own batch; average() all-reduces the flat gradient buffer
// (one call for the whole model, summed and divided by the world size), so the Adam step is the same on
// every rank and the parameters stay identical (broadcast() makes them so at the start; in_sync()
// checks it). any() turns a flag of one rank (a stop signal, a NaN loss) into the same decision on all,
// so no rank is left waiting in a collective. The collectives run on the context's device: NCCL on
// CUDA (a build with SAL_WITH_NCCL, one GPU per rank, one or several nodes), shared memory between the
// processes of one node on the CPU. A world of 1 without SAL_DIST_INIT_FILE makes every call a no-op;
// with it the collective path runs with one rank (how a one-GPU machine tests NCCL).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"

namespace sal {

namespace cuda {
struct NcclComm;
}
namespace cpu {
class ShmComm;
}

struct DistEnv {
  int world = 1, rank = 0, local_rank = 0;
  std::string init_file;
  double init_timeout_s = 300;
  // Reads the variables above; an unparsable or inconsistent value is an error naming the variable.
  static DistEnv from_env();
  bool leader() const { return rank == 0; }
};

class DataParallel {
 public:
  // ctx: the context the collectives run on (its device, its stream).
  DataParallel(const DistEnv& env, const Ctx& ctx);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  const DistEnv& env() const { return env_; }
  void average(Tensor& flat);    // in place: the mean over ranks (f32)
  // The same on `on`'s stream: a captured training step's hook passes its own context, so that the
  // all-reduce is recorded in the graph after the gradient it averages, whatever stream the step runs on.
  void average(const Ctx& on, Tensor& flat);
  void broadcast(Tensor& flat);  // in place: rank 0's values on every rank (f32)
  bool any(bool flag);           // true on every rank when any rank passed true (synchronises)
  // True on every rank when `values` (any dtype, any device: read back to the host) is the same bit for
  // bit on every rank, false on every rank otherwise (a 64-bit hash compared; synchronises).
  bool in_sync(const Tensor& values);
  bool uses_nccl() const { return comm_ != nullptr; }
  bool active() const { return comm_ != nullptr || shm_ != nullptr; }  // collectives run (else no-ops)
  std::string describe() const;  // e.g. "NCCL" or "shared memory (/tmp/sal.id)"

 private:
  DistEnv env_;
  Ctx ctx_;
  void max_on_host(std::vector<float>& v);  // the elementwise max over ranks, in place
  float* buffer(const Tensor& flat, const char* what) const;  // flat's data, checked: f32 on ctx's device
  cuda::NcclComm* comm_ = nullptr;
  std::unique_ptr<cpu::ShmComm> shm_;
  Tensor flags_;  // a few floats on the device for any() and in_sync()
};

}  // namespace sal
