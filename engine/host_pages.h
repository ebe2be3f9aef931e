// Whole pages of host memory for the CPU arena's blocks (engine/arena.h): address space reserved up front and
// committed as the arena grows, so that a block grows in place.
//
// Why: an arena whose first step outgrows its block used to add blocks and, at the next reset(), fold them into
// one block of the step's size. With malloc'd blocks that fold freed the pages the first step had touched and
// handed out fresh ones, which the kernel faulted in and zeroed again during the second step. Measured with
// sal_mask on 200 ImageNet images at batch 64 (MobileNet masker, 2 threads): 800 k page faults, half of them in
// that second round, and 1.7-3.3 s of the 3.6-4.7 s wall time in the kernel. A block that grows in place keeps
// the first step's layout and pages: nothing to fold, nothing faulted twice.
#pragma once
#include <cstddef>

namespace sal::host_pages {

size_t page_size();
size_t round_up(size_t bytes);  // to whole pages

// The address space a host arena block reserves: the machine's physical memory (no arena can use more), or
// `bytes` when that is larger. Reserving costs no memory: the pages are inaccessible and not charged.
size_t reservation_for(size_t bytes);

// `bytes` (whole pages) of inaccessible address space, or nullptr when the system refuses (a `ulimit -v`).
void* reserve(size_t bytes);
// Opens [p, p + bytes) of a reservation for reading and writing (zero-filled, faulted in on first touch); false
// when the system refuses to commit that much memory.
bool commit(void* p, size_t bytes);
// Gives back a reservation, committed or not.
void release(void* p, size_t bytes);

}  // namespace sal::host_pages
