// Masker throughput on the CPU and on CUDA, in images/s (items_per_second), 224x224 images:
//   masker_infer/<model>/<device>/batch:N   encoder forward + decoder -> mask (eval mode)
//   masker_infer_graph/<model>/cuda/batch:N the same, captured once as a CUDA graph and replayed
//       (engine/step_graph.h); validated against the eager masks (max abs difference <= 1e-6)
//   masker_train/<model>/<device>/batch:N   one training step as tools/sal_train.cpp runs it
//       (layers/masker_train_step.h): masker forward (training mode), the objective's device half with
//       the released loss (area weight 4, selector weight 1, 30% fake selectors, sal_train's defaults),
//       masker backward, the loss read back, Adam step; eager (sal_train --eager)
//   masker_train_graph/<model>/cuda/batch:N the same with the step's device part replayed from a CUDA
//       graph (sal_train's default on CUDA)
// Models (the encoder is also the black box, as in sal_train):
//   mobilenet_v1       MobileNet v1 0.75 from weights/mobilenet_v1_0.75_224.safetensors (or
//                      $SAL_MOBILENET_WEIGHTS), MaskerConfig::mobilenet_v1()
//   resnet50_released  torchvision ResNet-50 with seeded random weights, MaskerConfig::released_resnet50()
//   resnet50_paper     the same encoder, MaskerConfig::paper_resnet50()
// Batches: inference 1 and 8 on the CPU, 1 and 64 on CUDA; training 8 on the CPU, 64 on CUDA
// ($SAL_MASKER_BATCH replaces 8 and 64).
// CUDA runs the same code with Device::CUDA and is timed with CUDA events on the device's stream
// (manual time); without a device (or a CUDA build) those benchmarks skip with "no CUDA device".
//
// Validate, then time: two inference passes must give identical masks, finite and in [0,1]; the
// training step's loss must be finite in two untimed steps. Every iteration resets one arena;
// `arena_growths` counts its growths during timing (0: the steady state allocates nothing) and
// `arena_MB` is its peak.
//
//   OMP_NUM_THREADS=2 masker_bench --benchmark_min_time=2 [--benchmark_filter=cpu]
//
// masker_bench --dump_agreement=DIR writes the fixtures of bench/compare_masker_torch.py's agreement
// check and exits: for each model a masker file (layers/masker_io.h; seeded random parameters,
// batch-norm statistics included) and DIR/<model>_io.safetensors with its inputs and eval-mode
// outputs on 2 samples: mobilenet_v1 through the whole masker (images, classes, mask, head, and
// the encoder's feature maps feat0..feat3), the ResNet-50 decoders on random feature maps
// (feat0..feat3, classes, mask, head).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_main.h"
#include "bench/random_params.h"
#include "engine/arena.h"
#include "engine/safetensors.h"
#include "engine/step_graph.h"
#include "layers/masker.h"
#include "layers/masker_io.h"
#include "layers/masker_train_step.h"
#include "layers/network.h"
#include "layers/networks.h"
#include "layers/saliency_objective.h"
#include "optim/adam.h"
#ifdef SAL_WITH_CUDA
#include <cuda_runtime.h>

#include "bench/cuda_bench_util.h"
#include "cuda/device.h"
#endif

using namespace sal;
using sal::bench::mobilenet_path;
using sal::bench::randomize;

namespace {

constexpr int64_t kSize = 224;

enum class Model { MobileNet, ResNet50Released, ResNet50Paper };
const char* model_name(Model m) {
  return m == Model::MobileNet ? "mobilenet_v1" : m == Model::ResNet50Released ? "resnet50_released" : "resnet50_paper";
}

MaskerConfig masker_config(Model m) {
  MaskerConfig c = m == Model::MobileNet          ? MaskerConfig::mobilenet_v1()
                   : m == Model::ResNet50Released ? MaskerConfig::released_resnet50()
                                                  : MaskerConfig::paper_resnet50();
  c.seed = 1;
  return c;
}

// The encoder / black box of `m` on `device` (ResNet-50: seeded random weights made on the host).
std::unique_ptr<Network> make_encoder(Model m, Device device) {
  if (m == Model::MobileNet) return load_network(mobilenet_path(), device);
  InputSpec spec;
  spec.arch = "resnet50";
  spec.num_classes = 1000;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  std::memcpy(spec.mean, mean, sizeof mean);
  std::memcpy(spec.std, sd, sizeof sd);
  std::unique_ptr<Network> host = make_resnet50(spec, Device::CPU);
  randomize(host->params(), 1);
  if (device == Device::CPU) return host;
  std::unique_ptr<Network> net = make_resnet50(spec, device);
  for (const std::string& name : host->params().names())
    net->params().value(net->params().find(name)).copy_from(host->params().value(host->params().find(name)));
  return net;
}

// Uniform [0,1) images and class ids from seeded generators, on `device`.
Tensor random_images(int64_t batch, uint64_t seed, Device device) {
  Tensor x = Tensor::empty(Shape{batch, 3, kSize, kSize});
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = u(rng);
  return x.to(device);
}

std::vector<int32_t> random_classes(int64_t batch, int64_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(batch));
  for (int32_t& c : v) c = static_cast<int32_t>(rng() % static_cast<uint64_t>(k));
  return v;
}

// One device's context and the per-iteration timer: wall clock on the CPU, CUDA events on the
// device's stream otherwise.
struct Runner {
  Device device;
  Arena arena;
  Ctx ctx;
#ifdef SAL_WITH_CUDA
  static CudaDevice& cuda() {
    static CudaDevice dev;
    return dev;
  }
  explicit Runner(Device d) : device(d), arena(d), ctx(d == Device::CUDA ? cuda().ctx(&arena) : Ctx(d, &arena)) {}
  void sync() {
    if (device == Device::CUDA) {
      cuda().synchronize();
      cudaDeviceSynchronize();  // Tensor::to and uploads use the legacy stream
    }
  }
#else
  explicit Runner(Device d) : device(d), arena(d), ctx(d, &arena) {}
  void sync() {}
#endif

  // Runs fn once per benchmark iteration; CUDA: sets each iteration's event-timed duration.
  template <class Fn>
  void time(benchmark::State& state, Fn&& fn) {
#ifdef SAL_WITH_CUDA
    if (device == Device::CUDA) {
      bench::EventTimer ev;
      const auto stream = static_cast<cudaStream_t>(cuda().stream());
      for (auto _ : state) state.SetIterationTime(ev.seconds(stream, fn));
      return;
    }
#endif
    for (auto _ : state) {
      fn();
      benchmark::ClobberMemory();
    }
  }
};

// Encoders and maskers are built once per (model, device) and kept: Google Benchmark calls a
// benchmark function several times while it sizes the iteration count.
struct Setup {
  std::unique_ptr<Network> encoder;
  std::unique_ptr<Masker> infer, train;
  std::unique_ptr<Adam> adam;
};
Setup& setup(Model m, Device device) {
#ifdef SAL_WITH_CUDA
  if (cuda_available()) Runner::cuda();  // made before the cache below, so it outlives the cached CUDA tensors
#endif
  static std::map<std::pair<int, int>, Setup> cache;
  Setup& s = cache[{static_cast<int>(m), static_cast<int>(device)}];
  if (!s.encoder) {
    s.encoder = make_encoder(m, device);
    s.infer = std::make_unique<Masker>(masker_config(m), device);
    s.train = std::make_unique<Masker>(masker_config(m), device);
    AdamConfig ac;
    ac.lr = 1e-3;
    s.adam = std::make_unique<Adam>(s.train->params(), ac);
  }
  return s;
}

// Checks one mask: shape [n,1,224,224], finite, in [0,1]; returns an error text or "".
std::string check_mask(const std::vector<double>& v, const Tensor& mask, int64_t n) {
  if (mask.shape() != (Shape{n, 1, kSize, kSize})) return "mask has shape " + mask.shape().str();
  for (double e : v)
    if (!(e >= 0.0 && e <= 1.0)) return "mask value " + std::to_string(e) + " is not finite in [0,1]";
  return "";
}

bool prepare(benchmark::State& state, Device device) {
  if (device == Device::CUDA && !cuda_available()) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  return true;
}

void report(benchmark::State& state, const Runner& r, size_t growths, int64_t batch) {
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["arena_growths"] = static_cast<double>(r.arena.growths() - growths);
  state.counters["arena_MB"] = static_cast<double>(r.arena.peak()) / (1 << 20);
  state.counters["threads"] = omp_get_max_threads();
}

// Inference: encoder forward + decoder -> mask. graph = true (CUDA): the same forward captured once as a
// CUDA graph and replayed (engine/step_graph.h), one launch per batch; validated first against the
// eager masks (max abs difference <= 1e-6).
void BM_masker_infer(benchmark::State& state, Model m, Device device, bool graph) {
  if (!prepare(state, device)) return;
  const int64_t batch = state.range(0);
  try {
    Setup& s = setup(m, device);
    Runner r(device);
    const Tensor images = random_images(batch, 7, device);
    const Tensor classes = Tensor::from_labels(random_classes(batch, s.infer->config().num_classes, 11)).to(device);
    const StepGraph::Fn fn = [&](Ctx& c) {
      return std::vector<Tensor>{s.infer->forward(c, *s.encoder, images, classes, false).mask};
    };
    r.sync();
    std::vector<double> first;
    for (int run = 0; run < 2; ++run) {
      r.arena.reset();
      const Tensor mask = fn(r.ctx)[0];
      std::vector<double> v = mask.values();
      const std::string err = check_mask(v, mask, batch);
      if (!err.empty()) return state.SkipWithError(err.c_str());
      if (run == 1 && v != first) return state.SkipWithError("two inference passes gave different masks");
      first = std::move(v);
    }
    StepGraph steps(r.ctx, graph);  // owns r.arena from here on; graph = false: it just calls fn
    for (int run = 0; graph && run < 3; ++run) {
      const std::vector<double> v = steps.run(fn)[0].values();
      double worst = 0;
      for (size_t i = 0; i < v.size(); ++i) worst = std::max(worst, std::abs(v[i] - first[i]));
      if (worst > 1e-6)
        return state.SkipWithError(("graph replay differs from the eager masks by " + std::to_string(worst)).c_str());
    }
    if (graph && !steps.captured()) return state.SkipWithError("the step was not captured");
    r.arena.reset();
    r.sync();
    const size_t growths = r.arena.growths();
    r.time(state, [&] { benchmark::DoNotOptimize(steps.run(fn)[0].raw()); });
    r.sync();
    report(state, r, growths, batch);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// The training step of sal_train (layers/masker_train_step.h): masker forward, the objective's device
// half, masker backward, the loss read back, Adam. graph = true (CUDA): the step's device part replayed
// from a CUDA graph, as sal_train runs it by default; false: eager (sal_train --eager). The batch stays
// on the device (the step copies it into its input buffer on the device: no host upload is timed).
void BM_masker_train(benchmark::State& state, Model m, Device device, bool graph) {
  if (!prepare(state, device)) return;
  const int64_t batch = state.range(0);
  try {
    Setup& s = setup(m, device);
    Runner r(device);
    const Tensor images = random_images(batch, 7, device);
    const int64_t k = s.train->config().num_classes;
    const std::vector<int32_t> classes = random_classes(batch, k, 11);
    // sal_train's defaults: released loss, area weight 4, selector weight 1, fake selectors with p = 0.3.
    ObjectiveConfig oc = ObjectiveConfig::released();
    oc.area_weight = 4.0;
    oc.selector_weight = 1.0;
    SaliencyObjective objective(oc);
    std::vector<uint8_t> real(static_cast<size_t>(batch));
    std::mt19937 rng(5);
    for (uint8_t& f : real) f = std::uniform_real_distribution<double>(0.0, 1.0)(rng) < 0.3 ? 0 : 1;
    MaskerTrainStep train_step(r.ctx, *s.train, *s.encoder, objective, *s.adam, graph);  // owns r.arena
    double loss = 0;
    const auto step = [&] {
      loss = train_step.compute(images, classes, real, rng).terms.total;
      train_step.update();
    };
    r.sync();
    for (int run = 0; run < 3; ++run) {  // eager, captured, replayed (graph) / three eager steps
      step();
      if (!std::isfinite(loss))
        return state.SkipWithError(("the training step's loss is " + std::to_string(loss)).c_str());
    }
    if (graph && !train_step.captured()) return state.SkipWithError("the training step was not captured");
    r.sync();
    const size_t growths = r.arena.growths();
    r.time(state, step);
    r.sync();
    if (!std::isfinite(loss)) return state.SkipWithError("non-finite loss during timing");
    report(state, r, growths, batch);
    state.counters["loss"] = loss;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void register_all() {
  const Model models[] = {Model::MobileNet, Model::ResNet50Released, Model::ResNet50Paper};
  const char* env = std::getenv("SAL_MASKER_BATCH");  // the large batch instead of 8 (CPU) / 64 (CUDA)
  const int64_t batch_env = env ? std::atoll(env) : 0;
  SAL_CHECK(!env || batch_env > 0, "masker_bench: SAL_MASKER_BATCH must be a positive integer, got '", env ? env : "",
            "'");
  for (Device d : {Device::CPU, Device::CUDA}) {
    const bool gpu = d == Device::CUDA;
    const int64_t big = batch_env > 0 ? batch_env : gpu ? 64 : 8;
    const std::string dev = gpu ? "cuda" : "cpu";
    for (Model m : models) {
      auto* b = benchmark::RegisterBenchmark(("masker_infer/" + std::string(model_name(m)) + "/" + dev).c_str(),
                                             BM_masker_infer, m, d, false);
      b->Arg(1)->Arg(big)->ArgName("batch")->Unit(benchmark::kMillisecond);
      gpu ? b->UseManualTime() : b->UseRealTime();
    }
    for (Model m : models) {
      if (!gpu) break;  // graphs are a CUDA feature (on the CPU StepGraph just calls the step)
      auto* b = benchmark::RegisterBenchmark(("masker_infer_graph/" + std::string(model_name(m)) + "/" + dev).c_str(),
                                             BM_masker_infer, m, d, true);
      b->Arg(1)->Arg(big)->ArgName("batch")->Unit(benchmark::kMillisecond)->UseManualTime();
    }
    for (Model m : models) {
      auto* b = benchmark::RegisterBenchmark(("masker_train/" + std::string(model_name(m)) + "/" + dev).c_str(),
                                             BM_masker_train, m, d, false);
      b->Arg(big)->ArgName("batch")->Unit(benchmark::kMillisecond);
      gpu ? b->UseManualTime() : b->UseRealTime();
    }
    for (Model m : models) {
      if (!gpu) break;
      auto* b = benchmark::RegisterBenchmark(("masker_train_graph/" + std::string(model_name(m)) + "/" + dev).c_str(),
                                             BM_masker_train, m, d, true);
      b->Arg(big)->ArgName("batch")->Unit(benchmark::kMillisecond)->UseManualTime();
    }
  }
}

// ---------------------------------------------------------------- agreement fixtures

// Every masker parameter (BN statistics included) from a seeded generator, so that the PyTorch side
// loads non-trivial values: He-normal weights, BN gamma in [0.5, 1.5], shifts and means ~ 0.1 N(0,1),
// running variances in [0.5, 1.5], the embedding N(0, 1/C).
void randomize_masker(Masker& masker, uint64_t seed) {
  ParamStore& ps = masker.params();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (const std::string& name : ps.names()) {
    const ParamRef p = ps.find(name);
    Tensor t = ps.value(p);
    std::vector<double> v(static_cast<size_t>(t.numel()));
    const bool vec = t.ndim() == 1;
    const bool var = name.find("running_var") != std::string::npos;
    const bool gamma = vec && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const double fan = vec ? 1.0 : static_cast<double>(t.numel() / t.dim(0));
    for (double& x : v) {
      if (var || gamma) x = 0.5 + uniform(rng);
      else if (vec) x = 0.1 * normal(rng);
      else x = std::sqrt(2.0 / fan) * normal(rng);
    }
    t.copy_from(Tensor::from_values(v, t.shape(), t.dtype()));
  }
}

void dump_agreement(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const Model models[] = {Model::MobileNet, Model::ResNet50Released, Model::ResNet50Paper};
  const std::vector<int32_t> cls = {3, 817};
  for (Model m : models) {
    const std::string name = model_name(m);
    Masker masker(masker_config(m), Device::CPU);
    randomize_masker(masker, 17);
    Ctx ctx(Device::CPU);
    const Tensor classes = Tensor::from_labels(cls);
    NamedTensors io;
    io.emplace_back("classes", classes);
    MaskerFileInfo info;
    info.training = "random parameters: agreement fixture of bench/masker_bench.cpp";
    MaskerOutput o;
    if (m == Model::MobileNet) {
      std::unique_ptr<Network> enc = load_network(mobilenet_path(), Device::CPU);
      info.black_box = std::filesystem::path(mobilenet_path()).filename().string();
      info.black_box_arch = enc->input_spec().arch;
      const Tensor images = random_images(2, 23, Device::CPU);
      o = masker.forward(ctx, *enc, images, classes, false);
      io.emplace_back("images", images);
      const std::vector<Tensor> feats = enc->features();
      for (size_t i = 0; i < feats.size(); ++i) io.emplace_back("feat" + std::to_string(i), feats[i]);
    } else {
      // The decoder alone on random non-negative feature maps at ResNet-50's scales for 224 inputs.
      info.black_box = "resnet50 (random)";
      info.black_box_arch = "resnet50";
      std::vector<Tensor> feats;
      const MaskerConfig& c = masker.config();
      std::mt19937_64 rng(29);
      std::normal_distribution<float> normal(0.f, 1.f);
      for (size_t i = 0; i < c.feature_channels.size(); ++i) {
        const int64_t side = kSize / (4 << i);
        Tensor f = Tensor::empty(Shape{2, c.feature_channels[i], side, side});
        float* p = f.data<float>();
        for (int64_t j = 0; j < f.numel(); ++j) p[j] = std::abs(normal(rng));
        feats.push_back(f);
        io.emplace_back("feat" + std::to_string(i), f);
      }
      o = masker.forward_features(ctx, feats, classes, kSize, kSize, false);
    }
    io.emplace_back("mask", o.mask);
    io.emplace_back("head", o.head);
    save_masker(masker, info, dir + "/" + name + "_masker.safetensors");
    write_safetensors(dir + "/" + name + "_io.safetensors", io, {{"model", name}});
    std::printf("wrote %s/%s_masker.safetensors and %s_io.safetensors\n", dir.c_str(), name.c_str(), name.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* flag = "--dump_agreement=";
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      try {
        dump_agreement(argv[i] + std::strlen(flag));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "masker_bench --dump_agreement: %s\n", e.what());
        return 1;
      }
      return 0;
    }
  register_all();
  return sal::bench::run_benchmarks(argc, argv);
}
