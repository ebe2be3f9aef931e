// engine/step_graph.h: on the CPU run() calls the step each time in a reset arena (refusing host I/O
// from the second run on, engine/host_io_guard.h); on CUDA the third
// and later runs replay a captured graph that must follow new input contents exactly like eager runs
// (MobileNet masker inference), and a step that breaks the capture contract is an error.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "engine/device_session.h"
#include "engine/host_io_guard.h"
#include "engine/step_graph.h"
#include "layers/masker.h"
#include "layers/modules.h"
#include "layers/network.h"
#include "tests/op_check.h"

using namespace sal;

TEST_CASE("StepGraph (CPU): every run calls the step in a freshly reset arena") {
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  StepGraph g(ctx);
  CHECK(g.outputs().empty());
  Tensor x = Tensor::from_values({1, 2, 3}, Shape{3});
  int calls = 0;
  const StepGraph::Fn fn = [&](Ctx& c) {
    ++calls;
    return std::vector<Tensor>{scale(c, x, 2.0)};
  };
  for (int run = 0; run < 3; ++run) {
    x.copy_from(Tensor::from_values({1.0 + run, 2, 3}, Shape{3}));
    const std::vector<Tensor>& out = g.run(fn);
    REQUIRE(out.size() == 1);
    CHECK(out[0].values() == std::vector<double>{2.0 + 2 * run, 4, 6});
    CHECK(arena.used() == Arena::kAlign);  // only this run's output: the arena was reset first
    REQUIRE(g.outputs().size() == 1);
    CHECK(g.outputs()[0].data<float>() == out[0].data<float>());  // outputs(): the last run's, until the next
  }
  CHECK(calls == 3);
  CHECK_FALSE(g.captured());
  CHECK(g.runs() == 3);
  // A context without an arena cannot promise repeating addresses.
  CHECK_THROWS_WITH_AS(StepGraph(Ctx(Device::CPU)), doctest::Contains("needs an arena"), Error);
}

TEST_CASE("StepGraph (CPU): from the second run on, host I/O in the step is refused as a capture would refuse it") {
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  const Tensor x = Tensor::from_values({1, 2, 3}, Shape{3});
  // A step that reads a value back (as a loss printed from inside the step would).
  const StepGraph::Fn reads = [&](Ctx& c) {
    Tensor y = scale(c, x, 2.0);
    (void)y.values();
    return std::vector<Tensor>{y};
  };
  StepGraph g(ctx);
  CHECK_NOTHROW(g.run(reads));  // the first run is eager on CUDA too: host work allowed
  CHECK_THROWS_WITH_AS(g.run(reads), doctest::Contains("Tensor::values() / item() inside a StepGraph step"), Error);
  // Uploads and owning copies likewise; the guard ends with the step.
  const StepGraph::Fn uploads = [&](Ctx& c) { return std::vector<Tensor>{upload(c, x)}; };
  const StepGraph::Fn clones = [&](Ctx&) { return std::vector<Tensor>{x.to(Device::CPU)}; };
  CHECK_THROWS_WITH_AS(g.run(uploads), doctest::Contains("upload inside"), Error);
  CHECK_THROWS_WITH_AS(g.run(clones), doctest::Contains("Tensor::to (an owning copy) inside"), Error);
  CHECK_FALSE(host_io_guarded());
  CHECK(x.values() == std::vector<double>{1, 2, 3});
  // capture = false (a tool's --eager) checks nothing.
  StepGraph eager(ctx, false);
  for (int run = 0; run < 3; ++run) CHECK_NOTHROW(eager.run(reads));
  // Guards nest: the inner one's end leaves the outer one active.
  {
    HostIoGuard outer("outer");
    {
      HostIoGuard inner("inner");
    }
    CHECK_THROWS_WITH_AS(check_no_host_io("x"), doctest::Contains("x inside outer"), Error);
  }
  CHECK_NOTHROW(check_no_host_io("x"));
}

#ifdef SAL_WITH_CUDA
#include "cuda/device.h"

using sal::test::random_images;

TEST_CASE("cuda: StepGraph replays MobileNet masker inference exactly like eager runs") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  const std::string wpath = std::string(SAL_SOURCE_DIR) + "/weights/mobilenet_v1_0.75_224.safetensors";
  std::unique_ptr<Network> bb = load_network(wpath, Device::CUDA);
  MaskerConfig cfg = MaskerConfig::mobilenet_v1();
  cfg.seed = 3;
  Masker masker(cfg, Device::CUDA);
  const int64_t n = 2;
  // Inputs at fixed addresses (outside the arena); each run gets new contents.
  Tensor images = Tensor::empty(Shape{n, 3, 224, 224}, DType::F32, Device::CUDA);
  Tensor classes = Tensor::empty(Shape{n}, DType::I32, Device::CUDA);
  const StepGraph::Fn fn = [&](Ctx& c) {
    return std::vector<Tensor>{masker.forward(c, *bb, images, classes, false).mask};
  };
  // Eager references on their own arena.
  Arena eager_arena(Device::CUDA);
  Ctx eager = dev.ctx(&eager_arena);
  Arena arena(Device::CUDA);
  StepGraph g(dev.ctx(&arena));
  for (uint32_t run = 0; run < 4; ++run) {
    CAPTURE(run);
    images.copy_from(random_images(n, 224, 10 + run));
    classes.copy_from(Tensor::from_labels({static_cast<int32_t>(run * 7), static_cast<int32_t>(999 - run)}));
    eager_arena.reset();
    const std::vector<double> want = fn(eager)[0].values();
    const std::vector<double> got = g.run(fn)[0].values();
    CHECK(g.captured() == (run >= 1));
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    CHECK(worst <= 1e-6);  // the same kernels on the same data
  }
  dev.synchronize();

  // The conv + BN fusion (off by default on CUDA since session 13, layers/modules.h): captured and
  // replayed like its eager runs, and its masks within TF32's differences of the unfused ones (other
  // kernels, other summation orders: CUDA vs CPU in TF32 is up to ~0.03, mean ~1e-3, in the sal_mask test).
  {
    images.copy_from(random_images(n, 224, 40));
    classes.copy_from(Tensor::from_labels({3, 500}));
    set_conv_bn_fusion(false);  // whatever SAL_FUSE_CONV_BN says
    eager_arena.reset();
    const std::vector<double> unfused = fn(eager)[0].values();
    set_conv_bn_fusion(true);
    const int64_t fused_before = conv_bn_fused_forwards();
    Arena fused_arena(Device::CUDA);
    StepGraph fused(dev.ctx(&fused_arena));
    for (int run = 0; run < 3; ++run) {
      CAPTURE(run);
      eager_arena.reset();
      const std::vector<double> want = fn(eager)[0].values();
      const std::vector<double> got = fused.run(fn)[0].values();
      REQUIRE(got.size() == unfused.size());
      double worst = 0, worst_unfused = 0, sum_unfused = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        worst = std::max(worst, std::abs(got[i] - want[i]));
        worst_unfused = std::max(worst_unfused, std::abs(want[i] - unfused[i]));
        sum_unfused += std::abs(want[i] - unfused[i]);
      }
      CHECK(worst <= 1e-6);
      MESSAGE("fused vs unfused masks: max |difference| ", worst_unfused, ", mean ", sum_unfused / got.size());
      CHECK(worst_unfused <= 0.1);
      CHECK(sum_unfused / got.size() <= 5e-3);
    }
    CHECK(fused.captured());
    CHECK(conv_bn_fused_forwards() > fused_before);
    reset_conv_bn_fusion();
    dev.synchronize();
  }

  // capture = false (a tool's --eager): every run calls the step, never a graph.
  Arena plain_arena(Device::CUDA);
  StepGraph plain(dev.ctx(&plain_arena), /*capture=*/false);
  for (int run = 0; run < 3; ++run) {
    eager_arena.reset();
    const std::vector<double> want = fn(eager)[0].values();
    CHECK(plain.run(fn)[0].values() == want);
    CHECK_FALSE(plain.captured());
  }

  // A host read inside the step breaks the capture: an error, and the device stays usable.
  Arena bad_arena(Device::CUDA);
  StepGraph bad(dev.ctx(&bad_arena));
  const StepGraph::Fn reads_back = [&](Ctx& c) {
    Tensor y = scale(c, images, 2.0);
    (void)y.values();
    return std::vector<Tensor>{y};
  };
  bad.run(reads_back);  // eager: allowed
  CHECK_THROWS_AS(bad.run(reads_back), Error);
  CHECK_FALSE(bad.captured());
  eager_arena.reset();
  CHECK(fn(eager)[0].values().size() == static_cast<size_t>(n * 224 * 224));
}
#endif
