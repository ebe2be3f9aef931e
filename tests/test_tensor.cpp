// Tensor, arena and flat parameter store.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "engine/arena.h"
#include "engine/context.h"
#include "engine/host_pages.h"
#include "engine/params.h"
#include "tests/op_check.h"

using namespace sal;

TEST_CASE("shape: extents, numel, comparison, errors") {
  Shape s{2, 3, 4};
  CHECK(s.ndim() == 3);
  CHECK(s.numel() == 24);
  CHECK(s[-1] == 4);
  CHECK(s.str() == "[2,3,4]");
  CHECK(s == Shape{2, 3, 4});
  CHECK(s != Shape{2, 3});
  CHECK(Shape{}.numel() == 1);  // a scalar
  CHECK_THROWS_WITH_AS(Shape({1, 2, 3, 4, 5, 6, 7}), doctest::Contains("at most 6"), Error);
  CHECK_THROWS_WITH_AS(Shape({2, -1}), doctest::Contains("negative extent"), Error);
}

TEST_CASE("tensor: owning, views, reshape, slices, conversions") {
  Tensor t = Tensor::from_values({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK(t.owns_memory());
  CHECK(t.desc() == "f32[2,3]@cpu");
  CHECK(t.nbytes() == 24);
  CHECK(reinterpret_cast<uintptr_t>(t.raw()) % 64 == 0);

  Tensor r = t.reshape(Shape{3, 2});
  CHECK(r.raw() == t.raw());
  CHECK_THROWS_WITH_AS(t.reshape(Shape{4, 2}), doctest::Contains("reshape: [2,3] (6 elements) to [4,2]"), Error);

  Tensor row = t.slice0(1, 1);
  CHECK(row.values() == std::vector<double>{4, 5, 6});
  row.data<float>()[0] = 40;  // a view writes through
  CHECK(t.values()[3] == 40);
  CHECK_THROWS_WITH_AS(t.slice0(1, 2), doctest::Contains("slice0"), Error);

  CHECK_THROWS_WITH_AS(t.data<double>(), doctest::Contains("is f32, accessed as f64"), Error);

  Tensor d = t.to(DType::F64);
  CHECK(d.dtype() == DType::F64);
  CHECK(d.values() == t.values());

  Tensor b = Tensor::from_values({1.0, -2.5, 3.00390625}, Shape{3}, DType::BF16);
  // 3.00390625 is halfway between two bf16 values (3.0 and 3.015625): rounds to even (3.0).
  CHECK(b.values() == std::vector<double>{1.0, -2.5, 3.0});

  Tensor c = t.clone();
  CHECK(c.raw() != t.raw());
  CHECK(c.values() == t.values());

  Tensor z = Tensor::zeros(Shape{2, 2}, DType::I32);
  CHECK(z.values() == std::vector<double>{0, 0, 0, 0});
  z.fill(7);
  CHECK(z.values() == std::vector<double>{7, 7, 7, 7});
  CHECK(Tensor::from_labels({3, 1}).values() == std::vector<double>{3, 1});
  CHECK_THROWS_WITH_AS(t.copy_from(z), doctest::Contains("copy_from: i32[2,2]@cpu into f32[2,3]@cpu"), Error);
  CHECK_THROWS_WITH_AS(t.item(), doctest::Contains("has 6 elements"), Error);
}

TEST_CASE("tensor: CUDA memory is reached only through explicit copies") {
  Tensor t = Tensor::from_values({1, 2, 3}, Shape{3});
  CHECK(t.host().raw() == t.raw());  // already on the host: no copy
  if (!cuda_available()) {
    CHECK_THROWS_AS(t.to(Device::CUDA), Error);
    MESSAGE("skipped: no CUDA device (host/device copy round trip)");
    return;
  }
  Tensor g = t.to(Device::CUDA);
  CHECK(g.on_cuda());
  CHECK(g.values() == t.values());
  CHECK(g.host().device() == Device::CPU);
  CHECK(g.host().values() == t.values());
  CHECK_THROWS_WITH_AS(g.fill(1), doctest::Contains("not on the CPU"), Error);
}

TEST_CASE("arena: bump allocation, alignment, marks, growth then no allocation after reset") {
  Arena a(Device::CPU, 4096);
  Tensor x = a.alloc(Shape{10}, DType::F32);
  Tensor y = a.alloc(Shape{3}, DType::F64);
  CHECK_FALSE(x.owns_memory());
  CHECK(reinterpret_cast<uintptr_t>(x.raw()) % Arena::kAlign == 0);
  CHECK(reinterpret_cast<uintptr_t>(y.raw()) % Arena::kAlign == 0);
  CHECK(static_cast<char*>(y.raw()) - static_cast<char*>(x.raw()) == 256);
  CHECK(a.used() == 512);

  Arena::Mark m = a.mark();
  a.alloc(Shape{100}, DType::F32);
  CHECK(a.used() == 512 + 512);
  a.release(m);
  CHECK(a.used() == 512);
  Tensor again = a.alloc(Shape{1}, DType::F32);
  CHECK(static_cast<char*>(again.raw()) - static_cast<char*>(y.raw()) == 256);

  // A step that needs more than the capacity grows the arena ...
  a.reset();
  for (int i = 0; i < 8; ++i) a.alloc(Shape{1024}, DType::F32);
  CHECK(a.growths() >= 1);
  size_t peak = a.peak();
  CHECK(peak >= 8 * 4096);
  // ... and after a reset the same step fits in one block without growing.
  a.reset();
  size_t growths = a.growths();
  for (int step = 0; step < 3; ++step) {
    for (int i = 0; i < 8; ++i) a.alloc(Shape{1024}, DType::F32);
    a.reset();
  }
  CHECK(a.growths() == growths);
  CHECK(a.capacity() >= peak);

  // A mark taken before a growth releases the grown blocks too.
  Arena b(Device::CPU, 1024);
  Arena::Mark start = b.mark();
  b.alloc(Shape{512}, DType::F32);
  b.alloc(Shape{4096}, DType::F32);
  b.release(start);
  CHECK(b.used() == 0);
}

TEST_CASE("arena: KeepGrowth keeps the blocks a repeated pass grows, until a release outside it") {
  Arena a(Device::CPU, 1024, Arena::HostGrowth::Blocks);  // how a CUDA arena grows
  const Arena::Mark start = a.mark();
  Tensor kept = a.alloc(Shape{16}, DType::F32);  // allocated before: must survive untouched
  kept.fill(7);
  const size_t before = a.capacity();
  {
    const Arena::KeepGrowth keep(&a);
    for (int pass = 0; pass < 4; ++pass) {  // as Auto's timing: take temporaries, release them, again
      const Arena::Mark m = a.mark();
      Tensor t = a.alloc(Shape{4096}, DType::F32);  // does not fit the first block
      t.fill(pass);
      a.release(m);
    }
    CHECK(a.growths() == 1);  // the first pass grew the arena, the others reused the kept block
    CHECK(a.capacity() > before);
    const Arena::KeepGrowth nested(&a);  // nests
  }
  for (double v : kept.values()) CHECK(v == 7);
  a.release(start);  // outside KeepGrowth: the grown block goes
  CHECK(a.capacity() == before);
  CHECK(a.used() == 0);
  // Without KeepGrowth the same loop grows (and frees) on every pass.
  for (int pass = 0; pass < 3; ++pass) {
    const Arena::Mark m = a.mark();
    a.alloc(Shape{4096}, DType::F32);
    a.release(m);
  }
  CHECK(a.growths() == 4);
  CHECK(a.capacity() == before);
}

namespace {

long minor_page_faults() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

// One "step": tensors of growing sizes (each written whole), `value` written, the value each held before returned.
std::vector<float> arena_step(Arena& a, float value, std::vector<const void*>& where) {
  std::vector<float> before;
  where.clear();
  for (int64_t n = 1 << 10; n <= int64_t{8} << 20; n *= 2) {  // 4 KB .. 32 MB, 64 MB in all
    Tensor t = a.alloc(Shape{n}, DType::F32);
    float* p = t.data<float>();
    before.push_back(p[n - 1]);
    std::fill(p, p + n, value);
    where.push_back(p);
  }
  return before;
}

}  // namespace

TEST_CASE("arena: a host block grows in place, so the next step finds the first step's layout and pages") {
  Arena a(Device::CPU);
  std::vector<const void*> first, second;
  const long f0 = minor_page_faults();
  arena_step(a, 1.0f, first);
  const long f1 = minor_page_faults();
  CHECK(a.growths() >= 1);
  CHECK(a.capacity() >= a.peak());
  const size_t capacity = a.capacity(), growths = a.growths();
  a.reset();
  CHECK(a.capacity() == capacity);  // nothing to fold
  const std::vector<float> held = arena_step(a, 2.0f, second);
  const long f2 = minor_page_faults();
  CHECK(second == first);  // the same addresses
  for (float v : held) CHECK(v == 1.0f);  // the same pages: fresh ones would read 0
  CHECK(a.growths() == growths);
  // Faulting in 64 MB took thousands of 4 KB faults (or dozens of huge pages); the second step takes next to none.
  INFO("page faults: first step ", f1 - f0, ", second ", f2 - f1);
  CHECK(f1 - f0 > 0);
  CHECK((f2 - f1) * 8 <= f1 - f0);

  // A growth released before the step ends stays (the pages would be faulted again otherwise), with or without
  // KeepGrowth.
  Arena b(Device::CPU, 1024);
  for (int pass = 0; pass < 3; ++pass) {
    const Arena::Mark m = b.mark();
    b.alloc(Shape{4096}, DType::F32);
    b.release(m);
  }
  CHECK(b.growths() == 1);
  CHECK(b.used() == 0);
  CHECK(b.capacity() >= 4096 * sizeof(float));
}

// Not under AddressSanitizer: its shadow memory needs far more address space than the limit leaves.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAL_TEST_UNDER_ASAN 1
#endif
#endif
#if !defined(__SANITIZE_ADDRESS__) && !defined(SAL_TEST_UNDER_ASAN)
TEST_CASE("arena: where address space cannot be reserved (ulimit -v), a host arena adds blocks and folds them") {
  // In a child process whose address space is limited to what it has plus 256 MB: the machine-sized reservation is
  // refused, blocks of their own size are used, and reset() folds them as on CUDA.
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    try {
      std::ifstream statm("/proc/self/statm");
      long pages = 0;
      statm >> pages;
      const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(host_pages::page_size()) + (256 << 20);
      const rlimit rl{limit, limit};
      if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
      Arena a(Device::CPU);
      std::vector<const void*> where;
      arena_step(a, 1.0f, where);  // 64 MB
      if (a.growths() < 1 || a.capacity() < a.peak()) code = 4;
      const size_t growths = a.growths();
      a.reset();
      arena_step(a, 2.0f, where);
      if (a.growths() != growths) code = 5;  // folded into one block that holds the step
      try {
        a.alloc(Shape{int64_t{1} << 30}, DType::F32);  // 4 GB: over the limit
        code = 6;
      } catch (const Error& e) {
        if (std::string(e.what()).find("out of host memory") == std::string::npos) code = 7;
      }
    } catch (...) {
      code = 8;
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif

TEST_CASE("ctx: outputs come from the arena when one is set") {
  Arena a(Device::CPU, 1 << 16);
  Ctx ctx(Device::CPU, &a);
  Tensor x = Tensor::from_values({-1, 2}, Shape{2});
  Tensor y = relu(ctx, x);
  CHECK_FALSE(y.owns_memory());
  CHECK(a.used() > 0);
  Ctx plain;
  CHECK(relu(plain, x).owns_memory());
  CHECK_THROWS_WITH_AS(Ctx(Device::CUDA, &a), doctest::Contains("arena is on cpu, context on cuda"), Error);
}

TEST_CASE("param store: named slices of flat buffers") {
  ParamStore ps;
  ParamRef w = ps.add("layer1.0.conv1.weight", Shape{4, 3, 3, 3});
  ParamRef rm = ps.add("layer1.0.bn1.running_mean", Shape{4}, /*trainable=*/false);
  ParamRef b = ps.add("fc.bias", Shape{5});
  CHECK_THROWS_WITH_AS(ps.add("fc.bias", Shape{5}), doctest::Contains("'fc.bias' added twice"), Error);
  CHECK_THROWS_WITH_AS(ps.value(w), doctest::Contains("call finalize() first"), Error);
  ps.finalize(Device::CPU);
  CHECK_THROWS_WITH_AS(ps.add("late", Shape{1}), doctest::Contains("already finalized"), Error);

  CHECK(ps.value(w).shape() == Shape{4, 3, 3, 3});
  CHECK(ps.trainable(w));
  CHECK_FALSE(ps.trainable(rm));
  CHECK_THROWS_WITH_AS(ps.grad(rm), doctest::Contains("'layer1.0.bn1.running_mean' is frozen"), Error);
  CHECK_THROWS_WITH_AS(ps.find("nope"), doctest::Contains("no parameter named 'nope'"), Error);
  CHECK(ps.names() == std::vector<std::string>{"layer1.0.conv1.weight", "layer1.0.bn1.running_mean", "fc.bias"});

  // Slices are 64-byte aligned views into one buffer; gradients are slices of another.
  Tensor wv = ps.value(w), bv = ps.value(b);
  CHECK(reinterpret_cast<uintptr_t>(wv.raw()) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(bv.raw()) % 64 == 0);
  // Trainable parameters come first (w: 108 elements padded to 112, then b), frozen ones after.
  const float* base = static_cast<const float*>(ps.flat_values().raw());
  CHECK(static_cast<float*>(bv.raw()) - base == 112);
  CHECK(static_cast<float*>(ps.value(rm).raw()) - base == 128);
  CHECK(ps.num_trainable() == 128);
  CHECK(ps.flat_trainable_values().numel() == ps.flat_grads().numel());
  CHECK(ps.flat_frozen_values().raw() == ps.value(rm).raw());  // the rest: the running mean (and padding)
  CHECK(ps.flat_frozen_values().numel() == ps.num_values() - 128);
  CHECK(static_cast<float*>(ps.grad(b).raw()) - static_cast<float*>(ps.flat_grads().raw()) == 112);
  bv.fill(2);
  CHECK(ps.value("fc.bias").values() == std::vector<double>(5, 2.0));
  ps.grad(b).fill(3);
  ps.zero_grads();
  CHECK(ps.grad(b).values() == std::vector<double>(5, 0.0));
  // The same slice of any buffer aligned with the gradients (an optimizer's moments).
  Tensor moments = Tensor::zeros(Shape{128});
  Tensor mb = ps.grad_slice(b, moments);
  CHECK(mb.shape() == Shape{5});
  CHECK(static_cast<float*>(mb.raw()) - static_cast<float*>(moments.raw()) == 112);
  CHECK_THROWS_WITH_AS(ps.grad_slice(b, Tensor::zeros(Shape{127})), doctest::Contains("not aligned"), Error);
  CHECK_THROWS_WITH_AS(ps.grad_slice(rm, moments), doctest::Contains("is frozen"), Error);

  // Finalized without a gradient buffer (a model loaded for inference): the same value layout, and
  // gradients refused with the reason.
  ParamStore inf;
  ParamRef iw = inf.add("layer1.0.conv1.weight", Shape{4, 3, 3, 3});
  inf.add("layer1.0.bn1.running_mean", Shape{4}, /*trainable=*/false);
  ParamRef ib = inf.add("fc.bias", Shape{5});
  inf.finalize(Device::CPU, DType::F32, /*with_grads=*/false);
  CHECK(ps.has_grads());
  CHECK_FALSE(inf.has_grads());
  CHECK(inf.num_trainable() == 128);
  CHECK(inf.num_values() == ps.num_values());
  CHECK(static_cast<float*>(inf.value(ib).raw()) - static_cast<const float*>(inf.flat_values().raw()) == 112);
  CHECK(inf.trainable(iw));
  CHECK_THROWS_WITH_AS(inf.flat_grads(), doctest::Contains("flat_grads: these parameters have no gradient buffer"),
                       Error);
  CHECK_THROWS_WITH_AS(inf.grad(iw), doctest::Contains("no gradient buffer"), Error);
  inf.zero_grads();  // nothing to zero
}

TEST_CASE("Ctx::zero and Ctx::copy: same-device work on the context (what a captured step uses)") {
  Ctx ctx(Device::CPU);
  Tensor a = Tensor::from_values({1, 2, 3, 4}, Shape{2, 2});
  Tensor b = Tensor::zeros(Shape{2, 2});
  ctx.copy(a, b);
  CHECK(b.values() == std::vector<double>{1, 2, 3, 4});
  Tensor row = b.slice0(1, 1);
  ctx.zero(row);
  CHECK(b.values() == std::vector<double>{1, 2, 0, 0});
  ctx.copy(b, b);  // onto itself: nothing to do
  CHECK(b.values() == std::vector<double>{1, 2, 0, 0});
  Tensor c = Tensor::zeros(Shape{4});
  CHECK_THROWS_WITH_AS(ctx.copy(a, c), doctest::Contains("Ctx::copy: f32[2,2]@cpu into f32[4]@cpu"), Error);
  // alloc_zeros zeroes through the context too.
  Arena arena(Device::CPU);
  Ctx actx(Device::CPU, &arena);
  Tensor x = actx.alloc(Shape{3}, DType::F32);
  ctx.copy(Tensor::from_values({7, 8, 9}, Shape{3}), x);
  arena.reset();
  CHECK(actx.alloc_zeros(Shape{3}, DType::F32).values() == std::vector<double>{0, 0, 0});
#ifdef SAL_WITH_CUDA
  if (cuda_available()) {
    Tensor d = Tensor::zeros(Shape{2, 2}, DType::F32, Device::CUDA);
    CHECK_THROWS_WITH_AS(ctx.copy(a, d), doctest::Contains("between devices: upload or Tensor::to"), Error);
    CHECK_THROWS_WITH_AS(ctx.zero(d), doctest::Contains("is not on this context's device"), Error);
  }
#endif
}
