// Workspace arena: one per device. Temporaries of a forward/backward pass are bump-allocated
// from it and released all at once with reset() (or back to a mark()).
//
// Why it can grow: the first step of a run does not know its peak. When a request does not fit, the
// arena grows and counts the growth, so that from the second step on a training step allocates nothing.
// On CUDA it adds a block and the next reset() folds all blocks into one block of the peak size. On the
// host a block reserves address space and commits more of it as it grows (engine/host_pages.h), so the
// first step's layout and pages stay where they are: the second step faults nothing in again.
#pragma once
#include <cstddef>
#include <vector>

#include "engine/tensor.h"

namespace sal {

class Arena {
 public:
  static constexpr size_t kAlign = 256;  // enough for any vector load and for cudaMalloc-like alignment

  // How a host arena grows (a CUDA arena always adds blocks): InPlace, the default, as described above; Blocks
  // adds blocks and folds them at reset() as on CUDA (the fallback where address space cannot be reserved, and
  // how tests reach that path on the host).
  enum class HostGrowth { InPlace, Blocks };

  explicit Arena(Device device, size_t initial_bytes = 0, HostGrowth growth = HostGrowth::InPlace);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  Tensor alloc(const Shape& shape, DType dtype);

  struct Mark {
    size_t block = 0, offset = 0;
  };
  Mark mark() const { return {blocks_.empty() ? 0 : blocks_.size() - 1, top_}; }
  void release(Mark m);  // frees everything allocated after m
  void reset();          // frees everything; consolidates blocks after growth

  // While a KeepGrowth is alive, release() keeps the blocks added after its mark and reuses the newest from
  // its start (what was allocated after the mark is free all the same; the rest of the mark's block stays
  // unused until the next release before it or reset), so that work repeated in a loop, each time taking and
  // releasing its temporaries, grows the arena on its first pass only. Auto's timing of convolutions
  // (cuda/conv_backend.cpp) repeats each candidate's run: a growth inside a timed run would time a cudaMalloc
  // and, at its release, a cudaFree. Nests; ends with the last KeepGrowth.
  class KeepGrowth {
   public:
    explicit KeepGrowth(Arena* arena) : arena_(arena) {
      if (arena_) ++arena_->keep_growth_;
    }
    ~KeepGrowth() {
      if (arena_) --arena_->keep_growth_;
    }
    KeepGrowth(const KeepGrowth&) = delete;
    KeepGrowth& operator=(const KeepGrowth&) = delete;

   private:
    Arena* arena_;
  };

  Device device() const { return device_; }
  size_t capacity() const;      // bytes in all blocks (committed bytes on the host; a released growth in place stays)
  size_t used() const { return used_; }
  size_t peak() const { return peak_; }
  size_t growths() const { return growths_; }  // requests that did not fit: a block added, or one grown in place

 private:
  struct Block {
    char* ptr;
    size_t size;      // usable bytes
    size_t reserved;  // address space behind ptr (host blocks may grow up to it; = size on CUDA)
  };
  void add_block(size_t bytes);
  bool grow_in_place(size_t needed, size_t want);  // the last block to hold `needed` bytes, by `want` if it can
  void free_block(const Block& b);

  Device device_;
  HostGrowth host_growth_;
  std::vector<Block> blocks_;
  size_t top_ = 0;   // offset in the last block
  size_t used_ = 0;  // bytes handed out, padding included
  size_t peak_ = 0;
  size_t growths_ = 0;
  std::vector<size_t> used_before_;  // used_ when each block was opened (to undo on release)
  int keep_growth_ = 0;              // live KeepGrowth scopes
};

}  // namespace sal
