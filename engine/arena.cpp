#include "engine/arena.h"

#include <algorithm>

namespace sal {

namespace {
size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

Arena::Arena(Device device, size_t initial_bytes) : device_(device) {
  if (initial_bytes) add_block(align_up(initial_bytes, kAlign));
}

Arena::~Arena() {
  for (Block& b : blocks_) device_free(device_, b.ptr);
}

void Arena::add_block(size_t bytes) {
  char* p = static_cast<char*>(device_alloc(device_, bytes));
  used_before_.push_back(used_);
  blocks_.push_back({p, bytes});
  top_ = 0;
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
    add_block(align_up(want, kAlign));
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
    device_free(device_, blocks_.back().ptr);
    blocks_.pop_back();
    used_before_.pop_back();
    top_ = blocks_.back().size;
  }
  SAL_CHECK(m.offset <= top_, "Arena::release: mark is above the top (released twice?)");
  top_ = m.offset;
  used_ = used_before_.back() + m.offset;
}

void Arena::reset() {
  if (growths_ != growths_at_reset_ || blocks_.size() > 1) {
    // Fold everything the last step needed into one block so the next step allocates nothing.
    size_t want = align_up(std::max(peak_, capacity()), kAlign);
    for (Block& b : blocks_) device_free(device_, b.ptr);
    blocks_.clear();
    used_before_.clear();
    used_ = 0;
    add_block(want);
    growths_at_reset_ = growths_;
  }
  top_ = 0;
  used_ = 0;
}

}  // namespace sal
