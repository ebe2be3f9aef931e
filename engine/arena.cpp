#include "engine/arena.h"

#include <algorithm>

#include "engine/host_pages.h"

namespace sal {

namespace {
size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

Arena::Arena(Device device, size_t initial_bytes, HostGrowth growth) : device_(device), host_growth_(growth) {
  if (initial_bytes) add_block(align_up(initial_bytes, kAlign));
}

Arena::~Arena() {
  for (Block& b : blocks_) free_block(b);
}

void Arena::add_block(size_t bytes) {
  Block b{nullptr, bytes, bytes};
  if (device_ == Device::CPU) {
    b.size = b.reserved = host_pages::round_up(bytes);
    if (host_growth_ == HostGrowth::InPlace) {
      b.reserved = host_pages::reservation_for(b.size);
      b.ptr = static_cast<char*>(host_pages::reserve(b.reserved));
    }
    if (!b.ptr) {  // Blocks, or the address space is limited: a block of its own size
      b.reserved = b.size;
      b.ptr = static_cast<char*>(host_pages::reserve(b.size));
    }
    if (!b.ptr || !host_pages::commit(b.ptr, b.size)) {
      host_pages::release(b.ptr, b.reserved);
      fail("out of host memory: the workspace arena needs another ", bytes, " bytes (", capacity(), " taken)");
    }
  } else {
    b.ptr = static_cast<char*>(device_alloc(device_, bytes));
  }
  used_before_.push_back(used_);
  blocks_.push_back(b);
  top_ = 0;
}

bool Arena::grow_in_place(size_t needed, size_t want) {
  if (blocks_.empty() || device_ != Device::CPU) return false;
  Block& b = blocks_.back();
  if (needed > b.reserved) return false;
  // Commit `want` more where the system allows, else just what is needed (both hold `needed`: want >= the
  // request and b.size >= top_).
  for (size_t size : {std::min(b.reserved, host_pages::round_up(b.size + want)), host_pages::round_up(needed)}) {
    if (host_pages::commit(b.ptr + b.size, size - b.size)) {
      b.size = size;
      return true;
    }
  }
  return false;
}

void Arena::free_block(const Block& b) {
  if (device_ == Device::CPU)
    host_pages::release(b.ptr, b.reserved);
  else
    device_free(device_, b.ptr);
}

size_t Arena::capacity() const {
  size_t c = 0;
  for (const Block& b : blocks_) c += b.size;
  return c;
}

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  size_t bytes = align_up(std::max<size_t>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), 1), kAlign);
  if (blocks_.empty() || top_ + bytes > blocks_.back().size) {
    // Grow by at least the current capacity so a run settles after a few growths.
    size_t want = std::max(bytes, std::max<size_t>(capacity(), size_t{1} << 20));
    if (!blocks_.empty()) ++growths_;
    if (!grow_in_place(top_ + bytes, want)) add_block(align_up(want, kAlign));
  }
  char* p = blocks_.back().ptr + top_;
  top_ += bytes;
  used_ += bytes;
  peak_ = std::max(peak_, used_);
  return Tensor::view(p, shape, dtype, device_);
}

void Arena::release(Mark m) {
  if (blocks_.empty()) return;
  SAL_CHECK(m.block < blocks_.size(), "Arena::release: mark from another arena, or taken before a reset");
  if (keep_growth_ > 0 && blocks_.size() > m.block + 1) {
    // Keep the blocks opened after the mark; the next allocations start at the newest one's beginning.
    top_ = 0;
    used_ = used_before_.back();
    return;
  }
  // Blocks opened after the mark are dropped; the peak they served is remembered by reset().
  while (blocks_.size() > m.block + 1) {
    free_block(blocks_.back());
    blocks_.pop_back();
    used_before_.pop_back();
    top_ = blocks_.back().size;
  }
  SAL_CHECK(m.offset <= top_, "Arena::release: mark is above the top (released twice?)");
  top_ = m.offset;
  used_ = used_before_.back() + m.offset;
}

void Arena::reset() {
  // Blocks added for the last step (or a grown block released before it ended) fold into one block that holds
  // the step, so the next step allocates nothing. A host block that grew in place already holds it.
  if (blocks_.size() > 1 || peak_ > capacity()) {
    size_t want = align_up(std::max(peak_, capacity()), kAlign);
    for (Block& b : blocks_) free_block(b);
    blocks_.clear();
    used_before_.clear();
    used_ = 0;
    add_block(want);
  }
  top_ = 0;
  used_ = 0;
}

}  // namespace sal
