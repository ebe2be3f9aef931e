#include "engine/cpu/shm_comm.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "engine/error.h"
#include "engine/host_pages.h"

namespace sal::cpu {

namespace {

constexpr uint64_t kMagic = 0x314d4853204c4153ull;  // "SAL SHM1"
constexpr uint32_t kVersion = 1;

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

// A process that has exited (or is a zombie waiting for its parent) counts as gone.
bool process_alive(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t p = line.rfind(')');
  if (p == std::string::npos || p + 2 >= line.size()) return false;
  const char state = line[p + 2];
  return state != 'Z' && state != 'X';
}

void futex_wait(uint32_t* addr, uint32_t expected, long timeout_ns) {
  timespec ts{0, timeout_ns};
  // Shared (not FUTEX_PRIVATE): the word lives in a file mapping other processes wait on too.
  ::syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(uint32_t* addr) { ::syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

const char* op_name(uint32_t op) {
  switch (op) {
    case 1: return "all_reduce_avg";
    case 2: return "all_reduce_max";
    case 3: return "broadcast";
    default: return "nothing";
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

struct ShmComm::Header {
  uint64_t magic;
  uint32_t version;
  int32_t world;
  uint64_t chunk_floats;
  char host[64];            // where rank 0 runs: every rank must be on the same node
  int32_t pid[kMaxWorld];   // 0 until the rank joins (atomic)
  uint32_t joined;          // ranks joined (atomic)
  uint32_t arrived;         // ranks at the current barrier (atomic)
  uint32_t generation;      // barriers passed (atomic; the futex word)
  uint32_t unused;
  struct Call {             // what each rank put in each buffer, for the mismatch check
    uint32_t op;
    int32_t root;
    uint64_t count;
    uint64_t chunk;
  } call[2][kMaxWorld];
};

ShmComm::ShmComm(int world, int rank, const std::string& path, double timeout_s, size_t chunk_floats)
    : world_(world), rank_(rank), path_(path) {
  try {
    join(timeout_s, chunk_floats);
  } catch (...) {
    release();  // the destructor does not run for a constructor that throws
    throw;
  }
}

void ShmComm::join(double timeout_s, size_t chunk_floats) {
  const int world = world_, rank = rank_;
  const std::string& path = path_;
  SAL_CHECK(world >= 1 && world <= kMaxWorld, "data parallel (CPU): WORLD_SIZE ", world, " is not in 1..", kMaxWorld);
  SAL_CHECK(rank >= 0 && rank < world, "data parallel (CPU): RANK ", rank, " is not below WORLD_SIZE ", world);
  SAL_CHECK(chunk_floats >= 1, "data parallel (CPU): the chunk size must be at least one float");
  const size_t header_bytes = host_pages::round_up(sizeof(Header));
  const auto bytes_for = [&](size_t chunk) { return header_bytes + 2 * static_cast<size_t>(world) * chunk * sizeof(float); };
  const std::string me = hostname();
  const auto t0 = std::chrono::steady_clock::now();

  if (rank == 0) {
    // A temporary name, then rename: the others never open a half-made file, and a file an earlier
    // run left behind is replaced in one step.
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    fd_ = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    SAL_CHECK(fd_ >= 0, "data parallel (CPU): cannot create ", tmp, ": ", std::strerror(errno));
    unrenamed_ = tmp;
    map_bytes_ = bytes_for(chunk_floats);
    SAL_CHECK(::ftruncate(fd_, static_cast<off_t>(map_bytes_)) == 0, "data parallel (CPU): cannot size ", tmp, " to ",
              map_bytes_, " bytes: ", std::strerror(errno));
    map_ = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    SAL_CHECK(map_ != MAP_FAILED, "data parallel (CPU): cannot map ", tmp, ": ", std::strerror(errno));
    h_ = static_cast<Header*>(map_);  // zero-filled by ftruncate
    h_->version = kVersion;
    h_->world = world;
    h_->chunk_floats = chunk_floats;
    std::strncpy(h_->host, me.c_str(), sizeof(h_->host) - 1);
    h_->pid[0] = ::getpid();
    h_->joined = 1;
    h_->magic = kMagic;
    SAL_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "data parallel (CPU): cannot rename ", tmp, " to ", path, ": ",
              std::strerror(errno));
    unrenamed_.clear();
  } else {
    // Open rank 0's file; one from an earlier run (its rank 0 gone) is waited past until replaced.
    std::string stale;
    for (;;) {
      fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd_ < 0) {
        SAL_CHECK(errno == ENOENT, "data parallel (CPU): cannot open ", path, ": ", std::strerror(errno));
      } else {
        struct stat st{};
        SAL_CHECK(::fstat(fd_, &st) == 0, "data parallel (CPU): cannot stat ", path, ": ", std::strerror(errno));
        const size_t size = static_cast<size_t>(st.st_size);
        if (size >= header_bytes) {
          map_ = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
          SAL_CHECK(map_ != MAP_FAILED, "data parallel (CPU): cannot map ", path, ": ", std::strerror(errno));
          map_bytes_ = size;
          h_ = static_cast<Header*>(map_);
          const std::string host(h_->host, strnlen(h_->host, sizeof(h_->host)));
          if (h_->magic != kMagic || h_->version != kVersion) {
            stale = "it is not a shared-memory file of this engine (an NCCL id file of a CUDA run?)";
          } else if (host != me) {
            fail("data parallel (CPU): ", path, " was made by rank 0 on host '", host, "', this rank (", rank,
                 ") runs on '", me, "': CPU ranks share memory, so they run on one node (several nodes need "
                 "--device cuda and NCCL)");
          } else if (!process_alive(std::atomic_ref<int32_t>(h_->pid[0]).load())) {
            stale = "its rank 0 (pid " + std::to_string(h_->pid[0]) + ") is gone: left by an earlier run";
          } else {
            SAL_CHECK(h_->world == world, "data parallel (CPU): rank 0 (pid ", h_->pid[0], ") started a world of ",
                      h_->world, " ranks, this rank's WORLD_SIZE is ", world);
            SAL_CHECK(size == bytes_for(h_->chunk_floats), "data parallel (CPU): ", path, " has ", size,
                      " bytes, expected ", bytes_for(h_->chunk_floats));
            break;
          }
          ::munmap(map_, map_bytes_);
          map_ = nullptr;
          h_ = nullptr;
        } else {
          stale = "it is too short for a shared-memory file of this engine (an NCCL id file of a CUDA run?)";
        }
        ::close(fd_);
        fd_ = -1;
      }
      SAL_CHECK(seconds_since(t0) < timeout_s, "data parallel (CPU): rank ", rank, " waited ", timeout_s,
                " s for rank 0 to make ", path, stale.empty() ? " (is rank 0 running?)" : "; the file there: " + stale);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    int32_t expected = 0;
    const int32_t pid = ::getpid();
    if (!std::atomic_ref<int32_t>(h_->pid[rank]).compare_exchange_strong(expected, pid))
      fail("data parallel (CPU): RANK ", rank, " has already joined ", path, " (pid ", expected,
           "): two processes were started with the same RANK");
    std::atomic_ref<uint32_t>(h_->joined).fetch_add(1, std::memory_order_acq_rel);
  }
  chunk_ = h_->chunk_floats;
  data_ = reinterpret_cast<float*>(static_cast<char*>(map_) + header_bytes);

  // Wait for the others; a rank that joined and died stops the wait at once.
  while (std::atomic_ref<uint32_t>(h_->joined).load(std::memory_order_acquire) < static_cast<uint32_t>(world)) {
    if (const int gone = first_gone_peer(); gone >= 0)
      fail("data parallel (CPU): rank ", gone, " (pid ", h_->pid[gone], ") exited while rank ", rank,
           " waited for every rank to join ", path);
    if (seconds_since(t0) >= timeout_s) {
      std::string missing;
      for (int r = 0; r < world; ++r)
        if (std::atomic_ref<int32_t>(h_->pid[r]).load() == 0) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      fail("data parallel (CPU): only ", std::atomic_ref<uint32_t>(h_->joined).load(), " of ", world,
           " ranks joined ", path, " within ", timeout_s, " s (missing: rank ", missing,
           "; SAL_DIST_INIT_TIMEOUT_S sets the limit)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

ShmComm::~ShmComm() { release(); }

void ShmComm::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  h_ = nullptr;
  if (fd_ >= 0) {
    // Rank 0 removes the file, unless a newer run has already replaced it.
    struct stat mine{}, there{};
    if (rank_ == 0 && ::fstat(fd_, &mine) == 0 && ::stat(path_.c_str(), &there) == 0 && mine.st_ino == there.st_ino &&
        mine.st_dev == there.st_dev)
      ::unlink(path_.c_str());
    ::close(fd_);
    fd_ = -1;
  }
  if (!unrenamed_.empty()) ::unlink(unrenamed_.c_str());  // rank 0 failed before its file was in place
  unrenamed_.clear();
}

float* ShmComm::slot(int buffer, int r) const {
  return data_ + (static_cast<size_t>(buffer) * static_cast<size_t>(world_) + static_cast<size_t>(r)) * chunk_;
}

int ShmComm::first_gone_peer() const {
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    const int32_t pid = std::atomic_ref<int32_t>(h_->pid[r]).load(std::memory_order_acquire);
    if (pid != 0 && !process_alive(pid)) return r;
  }
  return -1;
}

void ShmComm::barrier(const char* what) {
  std::atomic_ref<uint32_t> generation(h_->generation), arrived(h_->arrived);
  const uint32_t g = generation.load(std::memory_order_acquire);
  if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(world_)) {
    // The last one in: nobody touches `arrived` again before the generation moves on.
    arrived.store(0, std::memory_order_relaxed);
    generation.fetch_add(1, std::memory_order_release);
    futex_wake_all(&h_->generation);
    return;
  }
  for (int spin = 0; spin < 2000; ++spin)
    if (generation.load(std::memory_order_acquire) != g) return;
  for (;;) {
    futex_wait(&h_->generation, g, 50'000'000);  // 50 ms, then a look at the others
    if (generation.load(std::memory_order_acquire) != g) return;
    if (const int gone = first_gone_peer(); gone >= 0) {
      // It may have passed this barrier and exited just after the look at the generation above.
      if (generation.load(std::memory_order_acquire) != g) return;
      fail("data parallel (CPU): rank ", gone, " (pid ", h_->pid[gone], ") exited while rank ", rank_,
           " waited for it in ", what, " (see that rank's own error)");
    }
  }
}

template <class Combine>
void ShmComm::exchange(Op op, float* data, size_t count, int root, Combine combine) {
  const size_t chunks = std::max<size_t>(1, (count + chunk_ - 1) / chunk_);
  for (size_t c = 0; c < chunks; ++c) {
    const int b = static_cast<int>(seq_ % 2);
    const size_t off = c * chunk_, m = count > off ? std::min(chunk_, count - off) : 0;
    h_->call[b][rank_] = {static_cast<uint32_t>(op), root, count, c};
    // (m == 0 for an empty call, whose data may be null: memcpy must not see it.)
    if (m > 0 && (op != Op::Broadcast || rank_ == root)) std::memcpy(slot(b, rank_), data + off, m * sizeof(float));
    barrier(op_name(static_cast<uint32_t>(op)));
    for (int r = 0; r < world_; ++r) {
      const Header::Call& o = h_->call[b][r];
      if (o.op != static_cast<uint32_t>(op) || o.count != count || o.root != root || o.chunk != c)
        fail("data parallel (CPU): the ranks' collectives differ: rank ", rank_, " called ",
             op_name(static_cast<uint32_t>(op)), " of ", count, " floats (root ", root, "), rank ", r, " ",
             op_name(o.op), " of ", o.count, " floats (root ", o.root, ")");
    }
    combine(b, data + off, m);
    ++seq_;
  }
}

void ShmComm::all_reduce_avg(float* data, size_t count) {
  const float n = static_cast<float>(world_);
  exchange(Op::Avg, data, count, 0, [&](int b, float* out, size_t m) {
#pragma omp parallel for if (m >= (size_t{1} << 16))
    for (int64_t i = 0; i < static_cast<int64_t>(m); ++i) {
      float s = slot(b, 0)[i];
      for (int r = 1; r < world_; ++r) s += slot(b, r)[i];
      out[i] = s / n;  // like ncclAvg: the sum, then the division
    }
  });
}

void ShmComm::all_reduce_max(float* data, size_t count) {
  exchange(Op::Max, data, count, 0, [&](int b, float* out, size_t m) {
    for (size_t i = 0; i < m; ++i) {
      float s = slot(b, 0)[i];
      for (int r = 1; r < world_; ++r) s = std::max(s, slot(b, r)[i]);
      out[i] = s;
    }
  });
}

void ShmComm::broadcast(float* data, size_t count, int root) {
  SAL_CHECK(root >= 0 && root < world_, "data parallel (CPU): broadcast root ", root, " is not a rank of ", world_);
  exchange(Op::Broadcast, data, count, root, [&](int b, float* out, size_t m) {
    if (rank_ != root && m > 0) std::memcpy(out, slot(b, root), m * sizeof(float));
  });
}

}  // namespace sal::cpu
