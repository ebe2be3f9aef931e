// Collectives among processes on one node through a shared-memory file: the CPU backend of
// engine/data_parallel.h (NCCL is the CUDA one). Linux only (mmap, futex, /proc).
//
// Rank 0 makes the file (a temporary name, then rename, so nobody opens it half-written; a file an
// earlier run left is replaced) and the others open it; the constructor returns when every rank has
// joined. The file holds a header (world, each rank's pid, a barrier) and two exchange buffers of
// `world` slots of `chunk_floats` floats each. A collective goes chunk by chunk: every rank copies its
// chunk into its slot of one buffer, all meet at the barrier, then every rank reads all slots and
// combines them in rank order 0 .. world-1, so the result is the same bit for bit on every rank. The
// next chunk uses the other buffer: a rank can only overwrite a buffer after the next barrier, which
// nobody passes before everyone has finished reading it, so one barrier per chunk is enough.
//
// Nothing waits forever: while a rank waits (to join, at a barrier) it checks that every other
// rank's process is alive and fails naming the one that is gone, and joining gives up after
// timeout_s. Every rank must call the same collectives with the same sizes in the same order; a
// mismatch is an error naming both ranks' calls.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sal::cpu {

class ShmComm {
 public:
  static constexpr int kMaxWorld = 256;
  // chunk_floats: the exchange granularity (rank 0's value is used by all); memory is
  // 2 * world * chunk_floats * 4 bytes plus a page.
  ShmComm(int world, int rank, const std::string& path, double timeout_s, size_t chunk_floats = size_t{1} << 20);
  ~ShmComm();
  ShmComm(const ShmComm&) = delete;
  ShmComm& operator=(const ShmComm&) = delete;

  int world() const { return world_; }
  int rank() const { return rank_; }
  // In place, count floats (the same count on every rank).
  void all_reduce_avg(float* data, size_t count);  // the sum in rank order, divided by world
  void all_reduce_max(float* data, size_t count);
  void broadcast(float* data, size_t count, int root);

 private:
  struct Header;
  enum class Op : uint32_t { Avg = 1, Max = 2, Broadcast = 3 };
  void join(double timeout_s, size_t chunk_floats);  // the constructor's work
  void release();                                    // unmap, close; rank 0 removes its file
  template <class Combine>
  void exchange(Op op, float* data, size_t count, int root, Combine combine);
  void barrier(const char* what);
  int first_gone_peer() const;  // a rank whose process has exited, or -1
  float* slot(int buffer, int r) const;

  int world_, rank_;
  std::string path_;
  std::string unrenamed_;  // rank 0's file under its temporary name, until the rename
  int fd_ = -1;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  Header* h_ = nullptr;
  float* data_ = nullptr;  // the exchange buffers, after the header's pages
  size_t chunk_ = 0;
  uint64_t seq_ = 0;  // chunks exchanged so far (the same on every rank): picks the buffer
};

}  // namespace sal::cpu
