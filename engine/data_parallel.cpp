#include "engine/data_parallel.h"

#include <cstdlib>
#include <string>

#include "engine/error.h"
#ifdef SAL_WITH_NCCL
#include "cuda/device.h"
#include "cuda/nccl_comm.h"
#endif

namespace sal {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  SAL_CHECK(end && *end == 0 && x >= 0 && x < (1 << 20), "data parallel: environment variable ", name, "='", v,
            "' is not a non-negative integer");
  return static_cast<int>(x);
}

}  // namespace

DistEnv DistEnv::from_env() {
  DistEnv e;
  e.world = env_int("WORLD_SIZE", 1);
  e.rank = env_int("RANK", 0);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  if (const char* f = std::getenv("SAL_DIST_INIT_FILE")) e.init_file = f;
  SAL_CHECK(e.world >= 1, "data parallel: WORLD_SIZE must be at least 1, got ", e.world);
  SAL_CHECK(e.rank < e.world, "data parallel: RANK ", e.rank, " is not below WORLD_SIZE ", e.world);
  SAL_CHECK(e.world == 1 || !e.init_file.empty(),
            "data parallel: WORLD_SIZE ", e.world, " needs SAL_DIST_INIT_FILE (a path every rank can see)");
  return e;
}

DataParallel::DataParallel(const DistEnv& env, const Ctx& ctx, double init_timeout_s) : env_(env), ctx_(ctx) {
  // Alone, NCCL is used only when asked for with an init file on CUDA: a one-GPU machine can then run
  // the NCCL path (a world of one) and compare it with the plain run.
  if (env_.world == 1 && (env_.init_file.empty() || ctx.device != Device::CUDA)) return;
#ifdef SAL_WITH_NCCL
  SAL_CHECK(ctx.device == Device::CUDA && ctx.cuda, "data parallel: WORLD_SIZE ", env_.world,
            " needs --device cuda (one GPU per rank)");
  comm_ = cuda::nccl_init(env_.world, env_.rank, env_.init_file, init_timeout_s);
  flag_ = Tensor::empty(Shape{1}, DType::F32, Device::CUDA);
#else
  (void)init_timeout_s;
  fail("data parallel: WORLD_SIZE ", env_.world, " needs a build with CUDA and NCCL (this one has ",
#ifdef SAL_WITH_CUDA
       "CUDA but CMake found no NCCL: pass -DNCCL_ROOT=...",
#else
       "no CUDA",
#endif
       ")");
#endif
}

DataParallel::~DataParallel() {
#ifdef SAL_WITH_NCCL
  cuda::nccl_destroy(comm_);
#endif
}

void DataParallel::average([[maybe_unused]] Tensor& flat) {
  if (!comm_) return;
#ifdef SAL_WITH_NCCL
  SAL_CHECK(flat.dtype() == DType::F32 && flat.device() == Device::CUDA, "DataParallel::average: f32 CUDA tensor, got ",
            flat.desc());
  void* stream = static_cast<CudaDevice*>(ctx_.cuda)->stream();
  cuda::nccl_all_reduce_avg(comm_, flat.data<float>(), static_cast<size_t>(flat.numel()), stream);
#endif
}

void DataParallel::broadcast([[maybe_unused]] Tensor& flat) {
  if (!comm_) return;
#ifdef SAL_WITH_NCCL
  SAL_CHECK(flat.dtype() == DType::F32 && flat.device() == Device::CUDA,
            "DataParallel::broadcast: f32 CUDA tensor, got ", flat.desc());
  cuda::nccl_broadcast(comm_, flat.data<float>(), static_cast<size_t>(flat.numel()), 0,
                       static_cast<CudaDevice*>(ctx_.cuda)->stream());
#endif
}

bool DataParallel::any(bool flag) {
  if (!comm_) return flag;
#ifdef SAL_WITH_NCCL
  flag_.copy_from(Tensor::from_values({flag ? 1.0 : 0.0}, Shape{1}, DType::F32));
  cuda::nccl_all_reduce_max(comm_, flag_.data<float>(), 1, static_cast<CudaDevice*>(ctx_.cuda)->stream());
  return flag_.values()[0] > 0.5;  // values() waits for the stream (a synchronous copy on the legacy stream)
#else
  return flag;
#endif
}

}  // namespace sal
