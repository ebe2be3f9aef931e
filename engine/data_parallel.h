// Data-parallel training: one process per GPU, launched like torchrun (or mpirun with these set):
//   WORLD_SIZE   number of processes (default 1)
//   RANK         this process, 0 .. WORLD_SIZE-1 (default 0)
//   LOCAL_RANK   its GPU on this node (default RANK)
//   SAL_DIST_INIT_FILE  a file path every rank can see (node-local for one node, a shared filesystem
//                for several): rank 0 writes the NCCL id there, the others read it. Required when
//                WORLD_SIZE > 1; remove the file of an earlier run first.
// Every rank computes the gradient of its own batch; average() all-reduces the flat gradient buffer
// (one NCCL call for the whole model, ncclAvg: summed and divided by the world size), so the Adam step is the same on
// every rank and the parameters stay identical (broadcast() makes them so at the start). any() turns
// a flag of one rank (a stop signal, a NaN loss) into the same decision on all, so no rank is left
// waiting in a collective. A world of 1 needs no NCCL and runs on the CPU as well (every call is a
// no-op) unless SAL_DIST_INIT_FILE is set on CUDA: then it runs the NCCL path with one rank (how a
// one-GPU machine tests it); a larger world needs CUDA contexts and a build with NCCL (SAL_WITH_NCCL).
#pragma once
#include <memory>
#include <string>

#include "engine/context.h"

namespace sal {

namespace cuda {
struct NcclComm;
}

struct DistEnv {
  int world = 1, rank = 0, local_rank = 0;
  std::string init_file;
  // Reads the variables above; an unparsable or inconsistent value is an error naming the variable.
  static DistEnv from_env();
  bool leader() const { return rank == 0; }
};

class DataParallel {
 public:
  // ctx: the context the collectives run on (its stream); with world > 1 it must be a CUDA context.
  DataParallel(const DistEnv& env, const Ctx& ctx, double init_timeout_s = 300);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  const DistEnv& env() const { return env_; }
  void average(Tensor& flat);    // in place: the mean over ranks (f32)
  void broadcast(Tensor& flat);  // in place: rank 0's values on every rank (f32)
  bool any(bool flag);           // true on every rank when any rank passed true (synchronises)
  bool uses_nccl() const { return comm_ != nullptr; }

 private:
  DistEnv env_;
  Ctx ctx_;
  cuda::NcclComm* comm_ = nullptr;
  Tensor flag_;  // one float on the device for any()
};

}  // namespace sal
