// upload / upload_into (engine/device_session.h): on the CPU the host tensor itself or a plain copy; on a
// CudaDevice an asynchronous copy through pinned staging memory (cuda/host_staging.h) that must deliver
// the host contents as they were at the call, reuse its memory once the copies are done, and refuse to run
// inside a CUDA graph capture.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/arena.h"
#include "engine/device_session.h"
#include "engine/ops.h"
#include "engine/step_graph.h"

using namespace sal;

namespace {

Tensor ramp(int64_t n, double start) {
  std::vector<double> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<double>(i % 1000);
  return Tensor::from_values(v, Shape{n}, DType::F32);
}

}  // namespace

TEST_CASE("upload on the CPU: the host tensor itself - upload_into copies and checks shapes") {
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  Tensor h = ramp(10, 1);
  Tensor same = upload(ctx, h);
  CHECK(same.raw() == h.raw());
  Tensor dst = Tensor::empty(Shape{10}, DType::F32);
  upload_into(ctx, dst, h);
  CHECK(dst.values() == h.values());
  Tensor wrong = Tensor::empty(Shape{11}, DType::F32);
  CHECK_THROWS_WITH(upload_into(ctx, wrong, h), doctest::Contains("upload_into"));
  Tensor i32 = Tensor::empty(Shape{10}, DType::I32);
  CHECK_THROWS_WITH(upload_into(ctx, i32, h), doctest::Contains("upload_into"));
}

#ifdef SAL_WITH_CUDA
#include "cuda/device.h"
#include "cuda/graph.h"
#include "cuda/host_staging.h"

TEST_CASE("cuda: uploads through pinned staging deliver the contents at the call, then reuse the memory") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  Arena arena(Device::CUDA);
  Ctx ctx = dev.ctx(&arena);
  size_t allocs_after_step2 = 0;
  for (int step = 0; step < 6; ++step) {
    CAPTURE(step);
    arena.reset();
    // A "batch" bigger than the first 1 MiB block and two small uploads, as a training step makes; the
    // host tensor is overwritten right after each call (the staging copy must already hold it).
    std::vector<Tensor> got;
    std::vector<std::vector<double>> want;
    for (int64_t n : {int64_t{600000}, int64_t{3}, int64_t{17}}) {
      Tensor h = ramp(n, 100.0 * step + static_cast<double>(n));
      want.push_back(h.values());
      got.push_back(upload(ctx, h));
      h.fill(-1.0);
    }
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i].values() == want[i]);  // values() waits for the stream
    if (step == 2) allocs_after_step2 = dev.staging()->allocations();
  }
  // From the third step on, every step fits the merged block: no new pinned allocation.
  REQUIRE(dev.staging() != nullptr);
  CHECK(dev.staging()->allocations() == allocs_after_step2);
  CHECK(dev.staging()->capacity() >= size_t{600000} * 4);

  // Back-to-back uploads into one buffer without a read in between: the stream applies them in order.
  Tensor dst = Tensor::empty(Shape{1000}, DType::F32, Device::CUDA);
  for (int k = 0; k < 5; ++k) upload_into(ctx, dst, ramp(1000, 10.0 * k));
  CHECK(dst.values() == ramp(1000, 40.0).values());

  // Inside a capture an upload is an error (a replay would copy stale staging memory): a StepGraph's
  // host I/O guard refuses it first (engine/host_io_guard.h) ...
  Arena graph_arena(Device::CUDA);
  StepGraph g(dev.ctx(&graph_arena));
  const Tensor h = ramp(8, 0);
  const StepGraph::Fn uploads = [&](Ctx& c) { return std::vector<Tensor>{scale(c, upload(c, h), 2.0)}; };
  g.run(uploads);  // eager: allowed
  CHECK_THROWS_WITH(g.run(uploads), doctest::Contains("upload inside a StepGraph capture"));
  CHECK_FALSE(g.captured());
  CHECK(upload(ctx, h).values() == h.values());  // the device stays usable
  // ... and the staging memory itself refuses it inside a capture that has no guard.
  Tensor into = Tensor::empty(Shape{8}, DType::F32, Device::CUDA);
  CHECK_THROWS_WITH(cuda::capture_graph(dev.stream(), [&] { dev.upload(into.raw(), h.raw(), h.nbytes()); }),
                    doctest::Contains("upload during CUDA graph capture"));
  CHECK(upload(ctx, h).values() == h.values());
}
#endif
