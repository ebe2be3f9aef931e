// One training step of a masker against a frozen black box (tools/sal_train.cpp, bench/masker_bench.cpp),
// built so that a CUDA graph can hold it (engine/step_graph.h). The black box is also the masker's frozen
// encoder, as in sal_train:
//   host:   the batch, the selector classes, the objective's draws (SaliencyObjective::draw) are
//           uploaded into fixed device buffers (asynchronous copies from pinned memory; the batch can
//           come ahead of time through the copy stream, prefetch());
//   device: zero the gradients, masker forward (training mode), the objective's device half, masker
//           backward, the gradient hook (frozen slices, the data-parallel all-reduce): the first step
//           runs eagerly, the second is captured and launched, later ones replay that graph (capture =
//           true on CUDA), eager otherwise;
//   host:   the loss sums read back (the one wait of a step), so the caller can stop on a non-finite
//           loss before update() (Adam: its constants uploaded, one kernel).
// On the CPU every step runs eagerly, but under the same contract: from the second step on, host I/O
// inside the device part is an error (engine/host_io_guard.h), so the CPU tests prove it capturable.
#pragma once
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "engine/step_graph.h"
#include "layers/masker.h"
#include "layers/network.h"
#include "layers/saliency_objective.h"
#include "optim/adam.h"

namespace sal {

class MaskerTrainStep {
 public:
  // ctx: the step's own context; its arena belongs to the step (StepGraph). capture: on CUDA, replay the
  // step as a CUDA graph (false: eager every step, a tool's --eager); on the CPU it only switches the
  // capture contract's check on (from the second step).
  MaskerTrainStep(const Ctx& ctx, Masker& masker, Network& black_box, SaliencyObjective& objective, Adam& adam,
                  bool capture);

  // Device work on the masker's flat gradients between its backward and Adam, part of the captured
  // step (so device ops only, queued on the context's stream). After changing what it does, reset().
  using GradHook = std::function<void(Ctx&)>;
  void set_grad_hook(GradHook hook) { hook_ = std::move(hook); }

  struct Result {
    Tensor mask;              // [N,1,H,W] on the device, valid until the next compute()
    Tensor logits_preserved;  // [N,K] the black box on Phi(X,M)
    ObjectiveTerms terms;
  };
  // images: [N,3,H,W] in [0,1], on the host (uploaded) or already on the step's device (copied there:
  // a benchmark's resident batch); classes: the selector class per image; real: 0 where it is fake.
  // Uploads, runs (or replays) the device part, reads the terms back. The gradients are then in the
  // masker's flat gradient buffer; nothing is updated yet.
  const Result& compute(const Tensor& images, const std::vector<int32_t>& classes, const std::vector<uint8_t>& real,
                        std::mt19937& rng) {
    launch(images, classes, real, rng);
    return finish();
  }
  // compute() in two halves, for a caller that prepares the next batch while the device works (sal_train
  // reads it and queues its upload between the two): launch() uploads and starts the device part (on
  // CUDA it returns without waiting for it), finish() waits for it and reads the terms back.
  void launch(const Tensor& images, const std::vector<int32_t>& classes, const std::vector<uint8_t>& real,
              std::mt19937& rng);
  const Result& finish();
  // The next step's images uploaded while this one runs: prefetch() (after launch()) copies host images
  // into a second input buffer, on CUDA through the device's copy stream (cuda/device.h) so that the DMA
  // overlaps the step's kernels; launch_prefetched() then runs a step on them, the compute stream waiting
  // for the copy first. On the CPU prefetch() is a plain copy. The same results as launch() with the
  // images themselves.
  void prefetch(const Tensor& host_images);
  void launch_prefetched(const std::vector<int32_t>& classes, const std::vector<uint8_t>& real, std::mt19937& rng);
  // The Adam step from the gradients compute() left.
  void update();
  // Forget the captured graph (a changed hook, batch shape or training phase): the next step is eager.
  void reset() { graph_.reset(); }
  bool captured() const { return graph_.captured(); }

 private:
  Ctx ctx_;
  Masker& masker_;
  Network& bb_;
  SaliencyObjective& objective_;
  Adam& adam_;
  StepGraph graph_;
  GradHook hook_;
  // Fixed device buffers the step reads; reallocated (and the graph reset) when the batch shape changes.
  Tensor images_, classes_;
  ObjectiveDraws draws_;
  double smooth_factor_ = 0;  // the objective's, from the last run of the device part (fixed per shape)
  std::vector<Tensor> out_;   // the last launch's outputs: mask, logits on Phi(X,M), loss sums
  bool launched_ = false;     // a launch() that finish() has not taken yet
  Tensor next_images_;        // prefetch()'s buffer on the step's device
  bool prefetched_ = false;   // next_images_ holds images no launch has taken yet

  // launch() once the images are in images_ (or, from_prefetch, in next_images_).
  void launch_on(const Tensor& images, bool from_prefetch, const std::vector<int32_t>& classes,
                 const std::vector<uint8_t>& real, std::mt19937& rng);
  Result result_;
};

}  // namespace sal
