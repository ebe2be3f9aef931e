#include "engine/data_parallel.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/cpu/shm_comm.h"
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

double env_seconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  SAL_CHECK(end && *end == 0 && x > 0 && x < 1e9, "data parallel: environment variable ", name, "='", v,
            "' is not a positive number of seconds");
  return x;
}

// FNV-1a over the bytes.
uint64_t hash_bytes(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

}  // namespace

DistEnv DistEnv::from_env() {
  DistEnv e;
  e.world = env_int("WORLD_SIZE", 1);
  e.rank = env_int("RANK", 0);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  if (const char* f = std::getenv("SAL_DIST_INIT_FILE")) e.init_file = f;
  e.init_timeout_s = env_seconds("SAL_DIST_INIT_TIMEOUT_S", e.init_timeout_s);
  SAL_CHECK(e.world >= 1, "data parallel: WORLD_SIZE must be at least 1, got ", e.world);
  SAL_CHECK(e.rank < e.world, "data parallel: RANK ", e.rank, " is not below WORLD_SIZE ", e.world);
  SAL_CHECK(e.world == 1 || !e.init_file.empty(),
            "data parallel: WORLD_SIZE ", e.world, " needs SAL_DIST_INIT_FILE (a path every rank can see)");
  return e;
}

DataParallel::DataParallel(const DistEnv& env, const Ctx& ctx) : env_(env), ctx_(ctx) {
  if (env_.world == 1 && env_.init_file.empty()) return;
  SAL_CHECK(!env_.init_file.empty(), "data parallel: WORLD_SIZE ", env_.world, " needs SAL_DIST_INIT_FILE");
  if (ctx.device == Device::CPU) {
    shm_ = std::make_unique<cpu::ShmComm>(env_.world, env_.rank, env_.init_file, env_.init_timeout_s);
    return;
  }
#ifdef SAL_WITH_NCCL
  SAL_CHECK(ctx.cuda, "data parallel: a CUDA context without its device");
  comm_ = cuda::nccl_init(env_.world, env_.rank, env_.init_file, env_.init_timeout_s);
  flags_ = Tensor::empty(Shape{8}, DType::F32, Device::CUDA);
#else
  fail("data parallel: WORLD_SIZE ", env_.world, " on CUDA needs a build with NCCL (CMake found none: pass "
       "-DNCCL_ROOT=...), or run the ranks on the CPU");
#endif
}

DataParallel::~DataParallel() {
#ifdef SAL_WITH_NCCL
  cuda::nccl_destroy(comm_);
#endif
}

std::string DataParallel::describe() const {
  if (comm_) return "NCCL";
  if (shm_) return "shared memory (" + env_.init_file + ")";
  return "none (one process)";
}

float* DataParallel::buffer(const Tensor& flat, const char* what) const {
  SAL_CHECK(flat.dtype() == DType::F32 && flat.device() == ctx_.device, "DataParallel::", what, ": an f32 ",
            device_name(ctx_.device), " tensor, got ", flat.desc());
  return flat.data<float>();
}

void DataParallel::average(Tensor& flat) { average(ctx_, flat); }

void DataParallel::average(const Ctx& on, Tensor& flat) {
  SAL_CHECK(on.device == ctx_.device, "DataParallel::average: a ", device_name(on.device), " context, the ranks run on ",
            device_name(ctx_.device));
  if (shm_) shm_->all_reduce_avg(buffer(flat, "average"), static_cast<size_t>(flat.numel()));
#ifdef SAL_WITH_NCCL
  if (comm_)
    cuda::nccl_all_reduce_avg(comm_, buffer(flat, "average"), static_cast<size_t>(flat.numel()),
                              on.cuda ? static_cast<CudaDevice*>(on.cuda)->stream() : nullptr);
#endif
}

void DataParallel::broadcast(Tensor& flat) {
  if (shm_) shm_->broadcast(buffer(flat, "broadcast"), static_cast<size_t>(flat.numel()), 0);
#ifdef SAL_WITH_NCCL
  if (comm_)
    cuda::nccl_broadcast(comm_, buffer(flat, "broadcast"), static_cast<size_t>(flat.numel()), 0,
                         static_cast<CudaDevice*>(ctx_.cuda)->stream());
#endif
}

void DataParallel::max_on_host(std::vector<float>& v) {
  if (shm_) {
    shm_->all_reduce_max(v.data(), v.size());
    return;
  }
  if (!comm_) return;
#ifdef SAL_WITH_NCCL
  SAL_CHECK(v.size() <= static_cast<size_t>(flags_.numel()), "DataParallel: ", v.size(), " flags, room for ",
            flags_.numel());
  std::vector<double> d(static_cast<size_t>(flags_.numel()), 0.0);
  std::copy(v.begin(), v.end(), d.begin());
  flags_.copy_from(Tensor::from_values(d, flags_.shape(), DType::F32));
  cuda::nccl_all_reduce_max(comm_, flags_.data<float>(), v.size(), static_cast<CudaDevice*>(ctx_.cuda)->stream());
  const std::vector<double> r = flags_.values();  // waits for the stream (a synchronous copy on the legacy stream)
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(r[i]);
#endif
}

bool DataParallel::any(bool flag) {
  std::vector<float> v{flag ? 1.0f : 0.0f};
  max_on_host(v);
  return v[0] > 0.5f;
}

bool DataParallel::in_sync(const Tensor& values) {
  if (!active()) return true;
  const Tensor h = values.host();
  const uint64_t hash = hash_bytes(h.raw(), h.nbytes());
  // Four 16-bit pieces (exact in f32) and their negations: after the max over ranks, a piece equals
  // its own value and the negation's max equals its negation on every rank only when all ranks agree.
  std::vector<float> v(8);
  for (int i = 0; i < 4; ++i) {
    v[static_cast<size_t>(i)] = static_cast<float>((hash >> (16 * i)) & 0xffff);
    v[static_cast<size_t>(i) + 4] = -v[static_cast<size_t>(i)];
  }
  const std::vector<float> mine = v;
  max_on_host(v);
  return v == mine;
}

}  // namespace sal
