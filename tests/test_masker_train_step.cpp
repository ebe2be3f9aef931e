// layers/masker_train_step.h: the training step of sal_train in its capturable form. On the CPU it gives
// bit for bit what the plain sequence (objective.evaluate, masker backward, Adam) gives, runs its device
// part under the capture contract from the second step on (a hook that reads a value back is an error
// there), and runs its gradient hook between backward and Adam. On CUDA the captured step (replayed from
// the third step) must give what the eager step gives.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/host_io_guard.h"
#include "layers/masker_train_step.h"
#include "layers/networks.h"
#include "tests/op_check.h"

using namespace sal;

namespace {

// The CIFAR recipe on 4 noise images from the seeded initialisation: what both step forms train.
struct Recipe {
  std::unique_ptr<Network> bb;
  std::unique_ptr<Masker> masker;
  std::unique_ptr<Adam> adam;
  SaliencyObjective objective{ObjectiveConfig::released()};
  Tensor images;  // host [4,3,32,32]
  std::vector<int32_t> classes{0, 3, 5, 9};
  std::vector<uint8_t> real{1, 1, 0, 1};
  std::mt19937 rng{8};

  explicit Recipe(Device dev) {
    bb = load_network(std::string(SAL_SOURCE_DIR) + "/weights/cifar_resnet20.safetensors", dev);
    masker = std::make_unique<Masker>(MaskerConfig::cifar_resnet(), dev);
    adam = std::make_unique<Adam>(masker->params(), AdamConfig{});
    images = sal::test::random_images(4, 32, 4);
  }
  // A new batch per step (so a replay that kept old inputs would show).
  static Tensor images_of_step(int step) { return sal::test::random_images(4, 32, 100 + static_cast<uint32_t>(step)); }
  void next_batch(int step) {
    images = images_of_step(step);
    classes = {step % 10, (step + 3) % 10, (step + 5) % 10, (step + 7) % 10};
  }
};

// Runs `steps` steps of r on `ctx` (batches r.next_batch(1..steps)), with compute() per step or, with
// read_ahead, as sal_train does: launch, prefetch the next batch's images, finish, update; launch_prefetched
// from the second step on. Returns the totals, then the parameters (on the host).
std::vector<double> run_steps(Recipe& r, const Ctx& ctx, bool capture, bool read_ahead, int steps) {
  MaskerTrainStep step(ctx, *r.masker, *r.bb, r.objective, *r.adam, capture);
  std::vector<double> out;
  r.next_batch(1);
  for (int s = 1; s <= steps; ++s) {
    if (!read_ahead) {
      r.next_batch(s);
      out.push_back(step.compute(r.images, r.classes, r.real, r.rng).terms.total);
    } else {
      if (s == 1) {
        step.launch(r.images, r.classes, r.real, r.rng);
      } else {
        step.launch_prefetched(r.classes, r.real, r.rng);
      }
      if (s < steps) step.prefetch(Recipe::images_of_step(s + 1));  // as sal_train's reader delivers them
      out.push_back(step.finish().terms.total);
      if (s < steps) {
        r.next_batch(s + 1);  // the classes of step s + 1 (the images arrived through prefetch)
        r.images = Tensor();
      }
    }
    step.update();
  }
  const std::vector<double> p = r.masker->params().flat_values().values();
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("MaskerTrainStep (CPU): reading ahead (prefetch, launch_prefetched) trains bit for bit like compute()") {
  Recipe a(Device::CPU), b(Device::CPU);
  Arena arena_a(Device::CPU), arena_b(Device::CPU);
  const std::vector<double> plain = run_steps(a, Ctx(Device::CPU, &arena_a), true, false, 4);
  const std::vector<double> ahead = run_steps(b, Ctx(Device::CPU, &arena_b), true, true, 4);
  CHECK(plain == ahead);
  // Misuse is refused with what was wrong.
  Recipe c(Device::CPU);
  Arena arena_c(Device::CPU);
  MaskerTrainStep step(Ctx(Device::CPU, &arena_c), *c.masker, *c.bb, c.objective, *c.adam, true);
  CHECK_THROWS_WITH_AS(step.launch_prefetched(c.classes, c.real, c.rng),
                       doctest::Contains("launch_prefetched without a prefetch()"), Error);
  step.prefetch(c.images);
  CHECK_THROWS_WITH_AS(step.prefetch(c.images), doctest::Contains("were not launched yet"), Error);
  CHECK_THROWS_WITH_AS(step.prefetch(Tensor::zeros(Shape{4, 1, 32, 32})), doctest::Contains("[N,3,H,W] batch"),
                       Error);
}

TEST_CASE("MaskerTrainStep (CPU): the plain sequence bit for bit, the capture contract, the gradient hook") {
  Recipe a(Device::CPU), b(Device::CPU);
  // a: the plain sequence, as sal_train ran it before the step existed.
  Arena arena_a(Device::CPU);
  Ctx ctx_a(Device::CPU, &arena_a);
  // b: the step, with a hook that zeroes the embedding's gradient (as --freeze-embedding does) and counts.
  Arena arena_b(Device::CPU);
  MaskerTrainStep step(Ctx(Device::CPU, &arena_b), *b.masker, *b.bb, b.objective, *b.adam, true);
  const ParamRef emb = b.masker->params().find("masker.embedding.weight");
  int hook_calls = 0;
  step.set_grad_hook([&](Ctx& c) {
    ++hook_calls;
    Tensor g = b.masker->params().grad(emb);
    c.zero(g);
  });
  const ParamRef emb_a = a.masker->params().find("masker.embedding.weight");
  const std::vector<double> emb0 = b.masker->params().value(emb).values();
  for (int s = 1; s <= 4; ++s) {
    CAPTURE(s);
    a.next_batch(s);
    b.next_batch(s);
    arena_a.reset();
    const Tensor images = a.images;
    const Tensor classes = Tensor::from_labels(a.classes);
    a.masker->params().zero_grads();
    MaskerOutput o = a.masker->forward(ctx_a, *a.bb, images, classes, true);
    ObjectiveResult r = a.objective.evaluate(ctx_a, *a.bb, images, o.mask, o.head_mask, o.filter_logits, classes,
                                             a.real, a.rng);
    a.masker->backward(ctx_a, r.dmask, &r.dhead_mask, &r.dfilter_logits);
    a.masker->params().grad(emb_a).zero();
    a.adam->step(ctx_a);

    const MaskerTrainStep::Result& got = step.compute(b.images, b.classes, b.real, b.rng);
    step.update();
    CHECK(got.terms.total == r.terms.total);
    CHECK(got.terms.area == r.terms.area);
    CHECK(got.terms.smoothness == r.terms.smoothness);
    CHECK(got.terms.preserver == r.terms.preserver);
    CHECK(got.terms.destroyer == r.terms.destroyer);
    CHECK(got.terms.selector == r.terms.selector);
    CHECK(got.mask.values() == o.mask.values());
    CHECK(got.logits_preserved.values() == r.logits_preserved.values());
    CHECK_FALSE(step.captured());  // graphs are CUDA's; the CPU calls the step every time
  }
  CHECK(hook_calls == 4);
  CHECK(b.masker->params().flat_values().values() == a.masker->params().flat_values().values());
  CHECK(b.adam->m().values() == a.adam->m().values());
  CHECK(b.masker->params().value(emb).values() == emb0);  // the hook ran before every Adam step

  // A hook that reads a value back: fine in the first (eager) step, an error from the second on.
  Recipe c(Device::CPU);
  Arena arena_c(Device::CPU);
  MaskerTrainStep bad(Ctx(Device::CPU, &arena_c), *c.masker, *c.bb, c.objective, *c.adam, true);
  bad.set_grad_hook([&](Ctx&) { (void)c.masker->params().flat_grads().values(); });
  CHECK_NOTHROW(bad.compute(c.images, c.classes, c.real, c.rng));
  CHECK_THROWS_WITH_AS(bad.compute(c.images, c.classes, c.real, c.rng),
                       doctest::Contains("Tensor::values() / item() inside a StepGraph step"), Error);
  // After reset() the next step is eager again; capture = false never checks.
  bad.reset();
  CHECK_NOTHROW(bad.compute(c.images, c.classes, c.real, c.rng));
  Arena arena_d(Device::CPU);
  MaskerTrainStep eager(Ctx(Device::CPU, &arena_d), *c.masker, *c.bb, c.objective, *c.adam, false);
  eager.set_grad_hook([&](Ctx&) { (void)c.masker->params().flat_grads().values(); });
  for (int s = 0; s < 3; ++s) CHECK_NOTHROW(eager.compute(c.images, c.classes, c.real, c.rng));
  // Bad batches are refused with what was wrong.
  CHECK_THROWS_WITH_AS(step.compute(b.images, {1, 2}, b.real, b.rng), doctest::Contains("2 classes and 4 real flags"),
                       Error);
  CHECK_THROWS_WITH_AS(step.compute(Tensor::zeros(Shape{4, 1, 32, 32}), b.classes, b.real, b.rng),
                       doctest::Contains("must be an [N,3,H,W] batch"), Error);
  // launch() and finish() alternate (compute() is the two in a row).
  CHECK_THROWS_WITH_AS(eager.finish(), doctest::Contains("MaskerTrainStep::finish without a launch()"), Error);
  eager.launch(c.images, c.classes, c.real, c.rng);
  CHECK_THROWS_WITH_AS(eager.launch(c.images, c.classes, c.real, c.rng),
                       doctest::Contains("the previous step was not finished"), Error);
  CHECK(std::isfinite(eager.finish().terms.total));
}

#ifdef SAL_WITH_CUDA
#include "cuda/conv_backend.h"
#include "cuda/device.h"

TEST_CASE("cuda: MaskerTrainStep replayed from a CUDA graph trains exactly like the eager step") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  Recipe a(Device::CUDA), b(Device::CUDA);
  Arena arena_a(Device::CUDA), arena_b(Device::CUDA);
  MaskerTrainStep eager(dev.ctx(&arena_a), *a.masker, *a.bb, a.objective, *a.adam, false);
  MaskerTrainStep graph(dev.ctx(&arena_b), *b.masker, *b.bb, b.objective, *b.adam, true);
  // Both hooks zero a slice, as --freeze-embedding does (memsets inside the graph).
  for (Recipe* r : {&a, &b}) {
    MaskerTrainStep& s = r == &a ? eager : graph;
    s.set_grad_hook([r](Ctx& c) {
      Tensor g = r->masker->params().grad(r->masker->params().find("masker.embedding.weight"));
      c.zero(g);
    });
  }
  double worst_loss = 0;
  for (int s = 1; s <= 6; ++s) {
    CAPTURE(s);
    a.next_batch(s);
    b.next_batch(s);
    const ObjectiveTerms ta = eager.compute(a.images, a.classes, a.real, a.rng).terms;
    eager.update();
    const ObjectiveTerms tb = graph.compute(b.images, b.classes, b.real, b.rng).terms;
    graph.update();
    CHECK(graph.captured() == (s >= 2));
    CHECK_FALSE(eager.captured());
    worst_loss = std::max(worst_loss, std::abs(ta.total - tb.total));
  }
  dev.synchronize();
  const std::vector<double> pa = a.masker->params().flat_values().values(), pb = b.masker->params().flat_values().values();
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, std::abs(pa[i] - pb[i]));
  MESSAGE("graph vs eager after 6 steps: parameters max |difference| ", worst, ", losses ", worst_loss,
          " (conv backend ", std::string(cuda::conv_backend_name(cuda::conv_backend())), ")");
  // The same kernels on the same data in the same order: identical, up to the rounding of an algorithm
  // choice that differs between the two (none expected: Auto's choices are per process).
  CHECK(worst <= 1e-6);
  CHECK(worst_loss <= 1e-6);
}

TEST_CASE("cuda: MaskerTrainStep reading ahead through the copy stream trains exactly like compute()") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  Recipe a(Device::CUDA), b(Device::CUDA);
  Arena arena_a(Device::CUDA), arena_b(Device::CUDA);
  // Captured steps both: the images arrive through the copy stream into the second buffer, the compute
  // stream waits for them, copies them into the graph's input buffer and replays.
  const std::vector<double> plain = run_steps(a, dev.ctx(&arena_a), true, false, 5);
  const std::vector<double> ahead = run_steps(b, dev.ctx(&arena_b), true, true, 5);
  dev.synchronize();
  REQUIRE(plain.size() == ahead.size());
  double worst = 0;
  for (size_t i = 0; i < plain.size(); ++i) worst = std::max(worst, std::abs(plain[i] - ahead[i]));
  MESSAGE("read-ahead vs compute() after 5 captured steps: max |difference| of losses and parameters ", worst);
  CHECK(worst <= 1e-6);  // the same kernels on the same data (a stale or torn batch would be far off)
}
#endif
