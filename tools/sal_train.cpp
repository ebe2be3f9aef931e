// sal_train: trains a masker (layers/masker.h) against a frozen black box with the saliency objective
// (layers/saliency_objective.h) on WebDataset shards (engine/shard_reader.h), on the CPU or (--device cuda)
// on CUDA device 0: the same code either way; the reader's batch is uploaded once per step.
// --init-masker FILE fine-tunes a trained masker (its parameters, a fresh Adam state).
//
// Several GPUs (engine/data_parallel.h): one process per GPU with WORLD_SIZE, RANK, LOCAL_RANK and
// SAL_DIST_INIT_FILE set, e.g. on one node with 8 GPUs
//   scripts/launch-ranks.sh --nproc 8 -- sal_train --device cuda ... --out runs/x
// or by hand: rm -f /tmp/sal.id; for r in 0 1 2 3 4 5 6 7; do
//     WORLD_SIZE=8 RANK=$r SAL_DIST_INIT_FILE=/tmp/sal.id sal_train --device cuda ... --out runs/x & done; wait
// (several nodes: RANK = node * GPUs + LOCAL_RANK, the id file on a shared filesystem; launch-ranks.sh
// --nnodes M --node-rank K --init-file PATH on each node). On the CPU the same launch without
// --device cuda runs several processes on one node (the collectives in shared memory; give each
// OMP_NUM_THREADS = cores / WORLD_SIZE, as launch-ranks.sh does). Each rank reads every WORLD_SIZE-th shard
// with its own seeds, --batch is per rank, the gradients are averaged with one all-reduce per step;
// rank 0 logs and writes the checkpoint, the others their reader and random states (rank-R.state), so
// --resume continues every rank where it stopped. At every checkpoint the ranks compare a hash of
// their parameters and stop with an error if they differ.
//
//   sal_train --shards shards/cifar-train --black-box weights/cifar_resnet20.safetensors --preset cifar
//             --batch 64 --steps 1000 --out runs/cifar [--resume]
//
// The CIFAR preset is the recipe of DESIGN.md section 1 ("Measured here"): the frozen black box is also the
// encoder (MaskerConfig::cifar_resnet), the class embedding starts from its classifier weights, the released
// loss with area weight 4 and the auxiliary selector loss, Adam 1e-3. With probability --fake-prob a
// sample's selector class is a random wrong class (only the area and selector terms apply to it).
//
// Output in --out: log.jsonl (one JSON object per logged step: the loss terms, the mean mask area for
// real and for fake selectors, the black box's accuracy on Phi(X,M) for the real ones and on the clean
// batch, then timing), and
// masker.safetensors (the masker alone, layers/masker_io.h, written with every checkpoint), and
// checkpoint.safetensors (written atomically: the masker parameters under their names, the Adam moments
// as "adam.m" / "adam.v", and metadata: step, adam_steps, reader_position, rng_labels, rng_objective,
// config). A checkpoint is written every --checkpoint-every steps, after the last step, and after the
// current step when SIGINT or SIGTERM arrives (then the exit code is 0). --resume continues from the
// checkpoint's next step with the same reader position and random states, so a resumed run logs the
// same losses as an uninterrupted one. With --eval-shards the health numbers are also measured on held-out
// images (every --eval-every steps and at the end; "eval_*" lines in log.jsonl).
//
// A non-finite total loss stops training before the Adam step: a message names the step, the last good
// checkpoint is left as it was, exit code 3. --debug-nan-at-step K (for tests only) pretends the total
// loss of step K is NaN. Exit codes: 0 done (or stopped by a signal), 1 error, 2 bad usage, 3 NaN/Inf loss.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/arena.h"
#include "engine/data_parallel.h"
#include "engine/device_session.h"
#include "engine/error.h"
#include "engine/param_io.h"
#include "engine/safetensors.h"
#include "engine/op_profile.h"
#include "engine/shard_reader.h"
#include "layers/masker.h"
#include "layers/masker_io.h"
#include "layers/masker_train_step.h"
#include "layers/network.h"
#include "layers/saliency_objective.h"
#include "optim/adam.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

struct Options {
  std::string shards, black_box, preset = "cifar", loss = "released", out;
  // -1: the preset's default (resolve_preset_defaults).
  int64_t batch = 32, steps = 1000, checkpoint_every = 100, log_every = 10, image_size = -1;
  double lr = 1e-3, area_weight = -1, selector_weight = 1.0, fake_prob = 0.3, blur_sigma = -1, scale_min = -1;
  double blur_prob = 0.5;  // evidence removal: blur with this probability, else a random colour
  double ratio_min = -1, ratio_max = -1;
  int blur_ksize = -1;
  // Schedule: the first embedding_only_steps steps train only the class embedding (the released code's
  // phase 1); the area weight rises linearly from area_weight_start to area_weight over area_ramp_steps.
  int64_t embedding_only_steps = 0, area_ramp_steps = 0;
  double area_weight_start = -1;
  // The class embedding starts as the classifier weights times this: with ImageNet-sized logits the filter
  // sigmoid(X . C_s) saturates at 1 over the whole image for the true class (no spatial information); a
  // smaller start keeps it in its responsive range, shaped like the class activation map.
  double embedding_init_scale = 1.0;
  // The class embedding stays the classifier weights times embedding_init_scale (also over --init-masker's):
  // with one training image per class (imagenet-sample) a trained embedding fits its image and fires on
  // nothing else; the classifier's own weights make the filter a class activation map for any image.
  bool freeze_embedding = false;
  double smooth_weight = -1, preserver_weight = -1, destroyer_weight = -1;  // -1: the loss variant's
  bool smooth_on_head = false;
  std::vector<int64_t> widths;  // upsampler widths (empty: the preset's)
  uint64_t seed = 0;
  int threads = 2;
  bool resume = false;
  int64_t debug_nan_at_step = -1;
  std::string eval_shards;
  int64_t eval_every = 0, eval_images = 2000;
  std::string init_masker;  // fine-tune: start from this masker file's parameters (fresh Adam state)
  std::string device = "cpu";  // cpu or cuda (device 0)
  bool eager = false;          // CUDA: run the training step eagerly instead of replaying it as a CUDA graph
};

template <class RNG>
std::string rng_text(const RNG& r) {
  std::ostringstream s;
  s << r;
  return s.str();
}

// A random state written by rng_text, read back from `file` (named in the error).
template <class RNG>
void rng_parse(RNG& r, const std::string& text, const std::string& file, const std::string& what) {
  std::istringstream s(text);
  s >> r;
  SAL_CHECK(!s.fail(), file, ": cannot parse the random state '", what, "'");
}

// ReaderPosition::parse with the file the position came from named in its error.
ReaderPosition parse_position(const std::string& text, const std::string& file) {
  try {
    return ReaderPosition::parse(text);
  } catch (const Error& e) {
    fail(file, ": ", e.what());
  }
}

// A uniform double in [0,1) from 53 bits: the same on every standard library.
double uniform01(std::mt19937_64& r) { return static_cast<double>(r() >> 11) * 0x1.0p-53; }

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char b[40];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

// "key=value" lines of every setting, in a fixed order: printed at the start, stored in checkpoints (a
// resumed run notes a difference) and in the masker file's training metadata.
std::string config_text(const Options& o, const ObjectiveConfig& oc) {
  std::string widths;
  for (int64_t x : o.widths) widths += (widths.empty() ? "" : ",") + std::to_string(x);
  const double smooth = oc.variant == LossVariant::Paper ? oc.tv_weight : oc.smooth_weight;
  std::ostringstream s;
  s << "shards=" << o.shards << "\nblack_box=" << o.black_box << "\npreset=" << o.preset << "\nloss=" << o.loss
    << "\nbatch=" << o.batch << "\nsteps=" << o.steps << "\nlr=" << num(o.lr) << "\nseed=" << o.seed
    << "\narea_weight=" << num(oc.area_weight) << "\nembedding_init_scale=" << num(o.embedding_init_scale)
    << "\nfreeze_embedding=" << o.freeze_embedding
    << "\nsmooth_weight=" << num(smooth) << "\npreserver_weight=" << num(oc.preserver_weight)
    << "\ndestroyer_weight=" << num(oc.destroyer_weight) << "\nfake_prob=" << num(o.fake_prob)
    << "\nimage_size=" << o.image_size << "\nblur_prob=" << num(oc.blur_prob) << "\nblur_sigma=" << num(oc.blur_sigma) << "\nblur_ksize=" << oc.blur_ksize
    << "\nscale_min=" << num(o.scale_min) << "\nratio_min=" << num(o.ratio_min) << "\nratio_max=" << num(o.ratio_max)
    << "\nselector_weight=" << num(oc.selector_weight) << "\nsmooth_on_head=" << oc.smooth_on_head
    << "\nembedding_only_steps=" << o.embedding_only_steps << "\narea_weight_start=" << num(o.area_weight_start)
    << "\narea_ramp_steps=" << o.area_ramp_steps << "\nwidths=" << (widths.empty() ? "preset" : widths)
    << "\ncheckpoint_every=" << o.checkpoint_every << "\nlog_every=" << o.log_every << "\nout=" << o.out
    << "\neval_shards=" << o.eval_shards << "\neval_every=" << o.eval_every << "\neval_images=" << o.eval_images
    << "\nreader_threads=" << o.threads << "\nomp_threads=" << omp_get_max_threads()
    << "\ninit_masker=" << o.init_masker << "\ndevice=" << o.device << "\neager=" << o.eager;
  return s.str();
}

// Drops the log lines of steps after `step` (logged by a run that stopped before its next checkpoint), so
// that a resumed run's log has each step once.
void trim_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  bool dropped = false;
  while (std::getline(in, line)) {
    const size_t at = line.find("\"step\":");
    long long line_step = 0;
    if (at != std::string::npos) {
      char* end = nullptr;
      line_step = std::strtoll(line.c_str() + at + 7, &end, 10);
      SAL_CHECK(end != line.c_str() + at + 7, path, ": a line has a malformed \"step\" (", line.substr(0, 80), ")");
    }
    if (at != std::string::npos && line_step > step) {
      dropped = true;
      continue;
    }
    kept += line + "\n";
  }
  in.close();
  if (!dropped) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    SAL_CHECK(out.good(), "cannot write ", tmp);
  }
  fs::rename(tmp, path);
}

struct Trainer {
  Options opt;
  std::unique_ptr<DeviceSession> device;  // --device: the CPU or this rank's CUDA device
  DistEnv dist;                           // data parallel: WORLD_SIZE, RANK, LOCAL_RANK (1, 0, 0 alone)
  std::unique_ptr<DataParallel> dp;
  ObjectiveConfig ocfg;
  std::unique_ptr<Network> bb;
  std::unique_ptr<Masker> masker;
  std::unique_ptr<Adam> adam;
  std::mt19937_64 label_rng;
  std::mt19937 obj_rng;
  std::string config;
  std::string ckpt_path;

  void save_checkpoint(int64_t step, const ReaderPosition& pos) {
    // The file is written from host memory: CUDA tensors are copied to the host first.
    NamedTensors t;
    ParamStore& ps = masker->params();
    for (const std::string& name : ps.names()) t.emplace_back(name, ps.value(name).host());
    t.emplace_back("adam.m", adam->m().host());
    t.emplace_back("adam.v", adam->v().host());
    std::map<std::string, std::string> meta = {{"step", std::to_string(step)},
                                               {"adam_steps", std::to_string(adam->steps())},
                                               {"reader_position", pos.str()},
                                               {"rng_labels", rng_text(label_rng)},
                                               {"rng_objective", rng_text(obj_rng)},
                                               {"config", config},
                                               {"format", "sal_train checkpoint v1"}};
    write_safetensors(ckpt_path, t, meta);
    // The trained masker alone, in the format the mask tools load (layers/masker_io.h).
    MaskerFileInfo info;
    info.black_box = fs::path(opt.black_box).filename().string();
    info.black_box_arch = bb->input_spec().arch;
    info.image_size = opt.image_size;
    info.training = "sal_train step " + std::to_string(step) + "\n" + config;
    save_masker(*masker, info, (fs::path(opt.out) / "masker.safetensors").string());
  }

  // Returns the step the checkpoint was written after, and sets the reader position.
  int64_t load_checkpoint(ReaderPosition& pos) {
    SAL_CHECK(fs::exists(ckpt_path), "--resume: no checkpoint at ", ckpt_path);
    SafeTensorsFile f(ckpt_path);
    const auto& md = f.metadata();
    auto get = [&](const char* k) -> const std::string& {
      auto it = md.find(k);
      SAL_CHECK(it != md.end(), ckpt_path, ": metadata '", k, "' is missing");
      return it->second;
    };
    auto count = [&](const char* k) -> int64_t {  // a non-negative integer, with an error naming the key
      const std::string& s = get(k);
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(s, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      SAL_CHECK(!s.empty() && used == s.size() && v >= 0, ckpt_path, ": metadata '", k,
                "' is not a non-negative integer: '", s, "'");
      return v;
    };
    load_params(masker->params(), f, LoadOptions{.strict = false, .prefix = ""});
    Tensor m = adam->m(), v = adam->v();
    SAL_CHECK(f.contains("adam.m") && f.contains("adam.v"), ckpt_path, ": the Adam moments are missing");
    Tensor fm = f.tensor("adam.m"), fv = f.tensor("adam.v");
    SAL_CHECK(fm.shape() == m.shape() && fv.shape() == v.shape() && fm.dtype() == m.dtype(), ckpt_path,
              ": the Adam moments have shape ", fm.shape().str(), ", expected ", m.shape().str());
    m.copy_from(fm);
    v.copy_from(fv);
    adam->set_steps(count("adam_steps"));
    pos = parse_position(get("reader_position"), ckpt_path);
    rng_parse(label_rng, get("rng_labels"), ckpt_path, "rng_labels");
    rng_parse(obj_rng, get("rng_objective"), ckpt_path, "rng_objective");
    if (get("config") != config)
      std::printf("note: the checkpoint was written with a different configuration:\n%s\n", get("config").c_str());
    return count("step");
  }

  // Data parallel: ranks other than 0 keep their own reader position and random states beside the
  // checkpoint (rank-R.state, written atomically at every checkpoint); the parameters and Adam
  // moments, the same on every rank, are in the checkpoint that rank 0 writes.
  std::string rank_state_path() const {
    return (fs::path(opt.out) / ("rank-" + std::to_string(dist.rank) + ".state")).string();
  }
  void save_rank_state(int64_t step, const ReaderPosition& pos) {
    const std::string path = rank_state_path(), tmp = path + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "step " << step << "\nreader_position " << pos.str() << "\nrng_labels " << rng_text(label_rng)
          << "\nrng_objective " << rng_text(obj_rng) << "\n";
      SAL_CHECK(out.good(), "cannot write ", tmp);
    }
    fs::rename(tmp, path);
  }
  void load_rank_state(int64_t step, ReaderPosition& pos) {
    const std::string path = rank_state_path();
    std::ifstream in(path);
    SAL_CHECK(in.good(), "--resume: rank ", dist.rank, " has no ", path, " (was the run started with this WORLD_SIZE?)");
    std::map<std::string, std::string> kv;
    std::string line;
    while (std::getline(in, line)) {
      const size_t sp = line.find(' ');
      if (sp != std::string::npos) kv[line.substr(0, sp)] = line.substr(sp + 1);
    }
    for (const char* k : {"step", "reader_position", "rng_labels", "rng_objective"})
      SAL_CHECK(kv.count(k), path, ": '", k, "' is missing");
    SAL_CHECK(kv["step"] == std::to_string(step), path, ": written after step ", kv["step"], ", the checkpoint after step ",
              step);
    pos = parse_position(kv["reader_position"], path);
    rng_parse(label_rng, kv["rng_labels"], path, "rng_labels");
    rng_parse(obj_rng, kv["rng_objective"], path, "rng_objective");
  }

  // The three health numbers on held-out shards (whole images, stream order, the first eval_images):
  // mean mask for the true class, mean mask for a wrong class (label + 1 + i mod (K-1)), and the black
  // box's accuracy on Phi(X,M) (evidence removal from a fixed seed) next to its clean accuracy. The
  // masker runs in inference mode; nothing trained and no training random state changes.
  void evaluate(Arena& arena, Ctx& ctx, SaliencyObjective& objective, int64_t K, int64_t step, std::ofstream& log) {
    ShardReaderOptions ro;
    ro.shards = expand_shards({opt.eval_shards});
    ro.batch_size = opt.batch;
    ro.image_size = opt.image_size;
    ro.mode = AugmentMode::EvalResize;
    ro.threads = opt.threads;
    ro.shuffle_buffer = 0;
    ro.shuffle_shards = false;
    ro.epochs = 1;
    ro.drop_last = false;
    ro.num_classes = static_cast<int>(K);
    ro.quiet = true;
    ShardReader reader(ro);
    std::mt19937 rng(12345);
    Batch b;
    double area_real = 0, area_fake = 0;
    int64_t seen = 0, correct = 0, clean = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (seen < opt.eval_images && reader.next(b)) {
      const int64_t n = std::min<int64_t>(b.size(), opt.eval_images - seen);
      arena.reset();
      const Tensor images = upload(ctx, b.images.slice0(0, n));
      const int32_t* labels = b.labels.data<int32_t>();
      std::vector<int32_t> truth(labels, labels + n), wrong(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        wrong[static_cast<size_t>(i)] = static_cast<int32_t>((labels[i] + 1 + (seen + i) % std::max<int64_t>(K - 1, 1)) % K);
      const std::vector<uint8_t> real(static_cast<size_t>(n), 1);
      const Tensor ct = upload(ctx, Tensor::from_labels(truth)), cw = upload(ctx, Tensor::from_labels(wrong));
      MaskerOutput of = masker->forward(ctx, *bb, images, cw, false);
      for (double v : of.mask.values()) area_fake += v;
      MaskerOutput o = masker->forward(ctx, *bb, images, ct, false);
      for (double v : o.mask.values()) area_real += v;
      ObjectiveResult r = objective.evaluate(ctx, *bb, images, o.mask, o.head_mask, o.filter_logits, ct, real, rng);
      const std::vector<double> z = r.logits_preserved.values();
      const std::vector<double> zc = bb->forward(ctx, bb->normalize(ctx, images)).values();
      for (int64_t i = 0; i < n; ++i) {
        int64_t best = 0, best_c = 0;
        for (int64_t k = 1; k < K; ++k) {
          if (z[static_cast<size_t>(i * K + k)] > z[static_cast<size_t>(i * K + best)]) best = k;
          if (zc[static_cast<size_t>(i * K + k)] > zc[static_cast<size_t>(i * K + best_c)]) best_c = k;
        }
        correct += best == labels[i];
        clean += best_c == labels[i];
      }
      seen += n;
    }
    SAL_CHECK(seen > 0, "--eval-shards ", opt.eval_shards, ": no images");
    const double px = static_cast<double>(seen * opt.image_size * opt.image_size);
    const double ar = area_real / px, af = area_fake / px;
    const double acc = static_cast<double>(correct) / static_cast<double>(seen);
    const double acc_c = static_cast<double>(clean) / static_cast<double>(seen);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("eval after step %lld on %lld images (%.1f s): mask real %.3f  fake %.3f  bb acc on Phi(X,M) %.3f "
                "(clean %.3f)\n",
                static_cast<long long>(step), static_cast<long long>(seen), secs, ar, af, acc, acc_c);
    std::fflush(stdout);
    log << "{\"step\":" << step << ",\"eval_images\":" << seen << ",\"eval_mask_area_real\":" << num(ar)
        << ",\"eval_mask_area_fake\":" << num(af) << ",\"eval_bb_acc_preserved\":" << num(acc)
        << ",\"eval_bb_acc_clean\":" << num(acc_c) << "}\n";
    log.flush();
  }

  // Linear ramp from area_weight_start to the objective's area weight over area_ramp_steps.
  double area_weight_at(int64_t step) const {
    if (opt.area_ramp_steps <= 0 || opt.area_weight_start < 0) return ocfg.area_weight;
    const double f = std::min(1.0, static_cast<double>(step - 1) / static_cast<double>(opt.area_ramp_steps));
    return opt.area_weight_start + f * (ocfg.area_weight - opt.area_weight_start);
  }

  // Phase 1: every gradient but the class embedding's is zeroed before the Adam step. Adam's moments of
  // those parameters then stay zero, so they do not move until phase 2.
  void keep_only_embedding_grads(const Ctx& c) {
    ParamStore& ps = masker->params();
    for (const std::string& name : ps.names()) {
      const ParamRef p = ps.find(name);
      if (!ps.trainable(p) || name == "masker.embedding.weight") continue;
      Tensor g = ps.grad(p);
      c.zero(g);
    }
  }

  // --freeze-embedding: the embedding's gradient and its Adam moments are zeroed before every Adam step, so
  // it never moves (the moments too: a run resumed with the flag may carry moments from before it, which
  // would go on moving the embedding with a zero gradient).
  void drop_embedding_grads(const Ctx& c) {
    const ParamStore& ps = masker->params();
    const ParamRef emb = ps.find("masker.embedding.weight");
    for (const Tensor& flat : {ps.flat_grads(), adam->m(), adam->v()}) {
      Tensor slice = ps.grad_slice(emb, flat);
      c.zero(slice);
    }
  }

  // --init-masker: the file must describe the masker these flags build (same preset, widths, classes,
  // black-box architecture); its parameters and BN statistics replace the fresh ones.
  void init_from_masker_file() {
    MaskerFileInfo info;
    const std::unique_ptr<Masker> from = load_masker(opt.init_masker, Device::CPU, &info);
    check_masker_black_box(info, opt.init_masker, *bb, opt.black_box);
    SAL_CHECK(info.image_size == opt.image_size, opt.init_masker, ": trained at ", info.image_size,
              " px, --image-size is ", opt.image_size);
    const auto want = masker_metadata(*masker, info), have = masker_metadata(*from, info);
    for (const auto& [k, v] : want)
      SAL_CHECK(have.count(k) && have.at(k) == v, opt.init_masker, ": metadata '", k, "' is '",
                have.count(k) ? have.at(k) : std::string("missing"), "', these flags build '", v,
                "' (--preset/--widths must match the file)");
    const ParamStore& src = from->params();
    ParamStore& dst = masker->params();
    for (const std::string& name : dst.names()) {
      SAL_CHECK(src.contains(name), opt.init_masker, ": no tensor '", name, "'");
      Tensor d = dst.value(dst.find(name));
      d.copy_from(src.value(src.find(name)));
    }
    std::printf("initialised from %s (%s)\n", opt.init_masker.c_str(),
                info.training.substr(0, info.training.find('\n')).c_str());
  }

  int run() {
    dist = DistEnv::from_env();
    device = std::make_unique<DeviceSession>(opt.device, "--device", dist.local_rank);
    const Device dev = device->device();
    // Join the other ranks first: a rank that fails later (a missing file, a bad option) then stops the
    // others at their next collective instead of leaving them waiting to join.
    Arena arena(dev);
    Ctx ctx = device->ctx(arena);
    dp = std::make_unique<DataParallel>(dist, ctx);
    fs::create_directories(opt.out);
    ckpt_path = (fs::path(opt.out) / "checkpoint.safetensors").string();
    // Temporary files of atomic writes (name.tmp.<pid>) left by a process killed mid-write.
    for (const auto& e : fs::directory_iterator(opt.out)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("checkpoint.safetensors.tmp.", 0) == 0 || name.rfind("masker.safetensors.tmp.", 0) == 0 ||
          (name.rfind("rank-", 0) == 0 && name.find(".state.tmp.") != std::string::npos)) {
        std::printf("removing %s (left by an interrupted checkpoint write)\n", e.path().c_str());
        fs::remove(e.path());
      }
    }
    const std::string log_path = (fs::path(opt.out) / "log.jsonl").string();

    bb = load_network(opt.black_box, dev);
    // The frozen black box is also the encoder; its classifier weights initialise the class embedding.
    const bool cifar = opt.preset == "cifar";
    const char* cls_name = cifar ? "linear.weight" : "conv_preds.weight";
    SAL_CHECK(bb->params().contains(cls_name), opt.black_box, ": the ", opt.preset, " preset needs a ",
              cifar ? "CIFAR ResNet" : "MobileNet v1", " black box (no '", cls_name, "'; arch '",
              bb->input_spec().arch, "')");
    Tensor cls_w = bb->params().value(cls_name);
    const int64_t K = cls_w.dim(0);
    MaskerConfig mc = cifar ? MaskerConfig::cifar_resnet(K) : MaskerConfig::mobilenet_v1();
    mc.num_classes = K;
    if (!opt.widths.empty()) {
      SAL_CHECK(opt.widths.size() == mc.widths.size(), "--widths: the ", opt.preset, " preset has ", mc.widths.size(),
                " upsamplers, got ", opt.widths.size(), " widths");
      mc.widths = opt.widths;
    }
    mc.seed = static_cast<uint32_t>(opt.seed);
    masker = std::make_unique<Masker>(mc, dev);
    if (opt.embedding_init_scale != 1.0) {
      std::vector<double> v = cls_w.values();
      for (double& x : v) x *= opt.embedding_init_scale;
      cls_w = Tensor::from_values(v, cls_w.shape(), cls_w.dtype());
    }
    masker->init_embedding(cls_w);
    if (!opt.init_masker.empty() && !opt.resume) {
      init_from_masker_file();
      if (opt.freeze_embedding) {
        masker->init_embedding(cls_w);
        std::printf("--freeze-embedding: the class embedding is the classifier weights x %g, not the file's\n",
                    opt.embedding_init_scale);
      }
    }
    AdamConfig ac;
    ac.lr = opt.lr;
    adam = std::make_unique<Adam>(masker->params(), ac);
    SaliencyObjective objective(ocfg);

    // Each rank draws its own fake labels, evidence removal and reader order (rank 0: the seeds alone).
    const uint64_t seed = opt.seed + 7919ull * static_cast<uint64_t>(dist.rank);
    label_rng.seed(seed);
    obj_rng.seed(static_cast<uint32_t>(seed * 2654435761ull + 1));

    std::printf("sal_train configuration:\n%s\nnum_classes=%lld masker_params=%lld\ncompute: %s\n", config.c_str(),
                static_cast<long long>(K), static_cast<long long>(masker->params().num_trainable()),
                device->describe().c_str());

    ReaderPosition pos;
    int64_t start = 0;
    if (opt.resume) {
      start = load_checkpoint(pos);
      if (!dist.leader()) load_rank_state(start, pos);
      std::printf("resumed from %s after step %lld (%s)\n", ckpt_path.c_str(), static_cast<long long>(start),
                  pos.str().c_str());
    }
    std::fflush(stdout);
    // Only rank 0 logs (its own batches' numbers) and writes checkpoints.
    if (opt.resume && dist.leader()) trim_log(log_path, start);
    std::ofstream log;
    if (dist.leader()) {
      log.open(log_path, opt.resume ? std::ios::app : std::ios::trunc);
      SAL_CHECK(log.good(), "cannot open ", log_path);
    }

    ShardReaderOptions ro;
    ro.shards = expand_shards({opt.shards});
    if (dist.world > 1) {  // shard i goes to rank i mod WORLD_SIZE
      std::vector<std::string> mine;
      for (size_t i = static_cast<size_t>(dist.rank); i < ro.shards.size(); i += static_cast<size_t>(dist.world))
        mine.push_back(ro.shards[i]);
      SAL_CHECK(!mine.empty(), "--shards: ", ro.shards.size(), " shards for ", dist.world,
                " ranks: every rank needs at least one (make more, smaller shards)");
      ro.shards = mine;
    }
    ro.batch_size = opt.batch;
    ro.image_size = opt.image_size;
    ro.mode = AugmentMode::Train;
    ro.scale_min = opt.scale_min;  // 1: the whole image, only flipped
    ro.ratio_min = opt.ratio_min;
    ro.ratio_max = opt.ratio_max;
    ro.threads = opt.threads;
    ro.seed = seed;
    ro.num_classes = static_cast<int>(K);
    ro.shuffle_buffer = 1000;
    ShardReader reader(ro, pos);

    if (dp->active())
      std::printf("data parallel: rank %d of %d on %s, collectives: %s, global batch %lld\n", dist.rank, dist.world,
                  dev == Device::CUDA ? ("CUDA device " + std::to_string(dist.local_rank)).c_str() : "the CPU",
                  dp->describe().c_str(), static_cast<long long>(opt.batch * dist.world));
    {
      Tensor values = masker->params().flat_values();
      dp->broadcast(values);  // every rank starts from rank 0's parameters
    }
    // The training step on its own arena (a captured CUDA graph keeps its addresses); `arena` serves the
    // log steps' clean forward and the held-out evaluation. Captured on CUDA unless --eager; over NCCL the
    // gradient all-reduce is a node of the graph (NCCL >= 2.9 supports capture; the first, eager step sets
    // the communicator up). Every rank replays the same graph in the same order.
    Arena step_arena(dev);
    const bool capture = !opt.eager;
    MaskerTrainStep step_fn(device->ctx(step_arena), *masker, *bb, objective, *adam, capture);
    if (dev == Device::CUDA)
      std::printf("training step: %s\n",
                  !capture             ? "eager (--eager)"
                  : dp->uses_nccl()    ? "captured as a CUDA graph with the NCCL all-reduce in it (step 1 eager, "
                                         "then one launch per step)"
                                       : "captured as a CUDA graph (step 1 eager, then one launch per step)");
    // Between the masker's backward and Adam, on the device: phase 1 or --freeze-embedding zero
    // gradient slices, and the gradient is averaged over the ranks (a no-op alone).
    bool phase1 = false;  // phase 1 (--embedding-only-steps) for the hook; a change resets the captured step
    step_fn.set_grad_hook([&](Ctx& c) {
      if (phase1) keep_only_embedding_grads(c);
      if (opt.freeze_embedding) drop_embedding_grads(c);
      Tensor grads = masker->params().flat_grads();
      dp->average(c, grads);
    });
    // The next step's batch is read and uploaded while the device runs the current step (on CUDA through
    // the copy stream: the reader's copy, the copy into pinned memory and the DMA all overlap the step; on
    // the CPU, where a step does not run ahead, this changes nothing but the order). Checkpoints record the
    // reader's position after the batch just trained, not after the one read ahead: a resumed run reads
    // that one again.
    Batch batch, ahead;
    bool have_ahead = false;
    ReaderPosition pos_trained = reader.position(), pos_ahead;
    std::vector<int32_t> sel;
    std::vector<uint8_t> real;

    using clock = std::chrono::steady_clock;
    auto t_log = clock::now();
    int64_t images_since = 0;
    if (start >= opt.steps) std::printf("nothing to do: the checkpoint is at step %lld\n", static_cast<long long>(start));
    for (int64_t step = start + 1; step <= opt.steps; ++step) {
      if (have_ahead) {
        std::swap(batch, ahead);
        pos_trained = pos_ahead;
      } else {
        SAL_CHECK(reader.next(batch), "the shards ran out at step ", step);
        pos_trained = reader.position();
      }
      const bool from_ahead = have_ahead;
      have_ahead = false;
      const int64_t n = batch.size();
      const int32_t* labels = batch.labels.data<int32_t>();
      sel.assign(static_cast<size_t>(n), 0);
      real.assign(static_cast<size_t>(n), 1);
      for (int64_t i = 0; i < n; ++i) {
        sel[static_cast<size_t>(i)] = labels[i];
        if (K > 1 && uniform01(label_rng) < opt.fake_prob) {
          const int64_t shift = 1 + static_cast<int64_t>(label_rng() % static_cast<uint64_t>(K - 1));
          sel[static_cast<size_t>(i)] = static_cast<int32_t>((labels[i] + shift) % K);
          real[static_cast<size_t>(i)] = 0;
        }
      }
      objective.set_area_weight(area_weight_at(step));
      if ((step <= opt.embedding_only_steps) != phase1) {  // the hook changes: capture the step again
        phase1 = !phase1;
        step_fn.reset();
      }
      if (from_ahead)
        step_fn.launch_prefetched(sel, real, obj_rng);
      else
        step_fn.launch(batch.images, sel, real, obj_rng);
      if (step < opt.steps && reader.next(ahead)) {  // read ahead while the device works
        pos_ahead = reader.position();
        step_fn.prefetch(ahead.images);
        have_ahead = true;
      }
      const MaskerTrainStep::Result& r = step_fn.finish();
      double total = r.terms.total;
      if (step == opt.debug_nan_at_step) total = std::nan("");
      if (dp->any(!std::isfinite(total))) {
        std::fprintf(stderr,
                     "error: the total loss is %s at step %lld; stopping without an Adam step and without saving "
                     "(the last good checkpoint, if any, is %s)\n",
                     std::isfinite(total) ? "finite here, not finite on another rank," : std::isnan(total) ? "NaN" : "Inf",
                     static_cast<long long>(step), ckpt_path.c_str());
        return 3;
      }
      step_fn.update();
      images_since += n;

      const bool last = step == opt.steps;
      if (dist.leader() && opt.log_every > 0 && (step % opt.log_every == 0 || last || step == start + 1)) {
        // Health numbers: mean mask for real and fake selectors, black-box accuracy on Phi(X,M) (real).
        const std::vector<double> mask = r.mask.values();
        const std::vector<double> z = r.logits_preserved.values();
        const int64_t per = r.mask.numel() / n;
        double area_real = 0, area_fake = 0;
        int64_t n_real = 0, n_fake = 0, correct = 0;
        for (int64_t i = 0; i < n; ++i) {
          double s = 0;
          for (int64_t j = 0; j < per; ++j) s += mask[static_cast<size_t>(i * per + j)];
          s /= static_cast<double>(per);
          if (real[static_cast<size_t>(i)]) {
            area_real += s;
            ++n_real;
            int64_t best = 0;
            for (int64_t k = 1; k < K; ++k)
              if (z[static_cast<size_t>(i * K + k)] > z[static_cast<size_t>(i * K + best)]) best = k;
            correct += best == labels[i];
          } else {
            area_fake += s;
            ++n_fake;
          }
        }
        // The black box on the clean batch, for reference (after the update: it changes nothing trained).
        arena.reset();
        const Tensor images = upload(ctx, batch.images);
        const std::vector<double> zc = bb->forward(ctx, bb->normalize(ctx, images)).values();
        int64_t clean_correct = 0;
        for (int64_t i = 0; i < n; ++i) {
          int64_t best = 0;
          for (int64_t k = 1; k < K; ++k)
            if (zc[static_cast<size_t>(i * K + k)] > zc[static_cast<size_t>(i * K + best)]) best = k;
          clean_correct += best == labels[i];
        }
        const double acc_clean = static_cast<double>(clean_correct) / static_cast<double>(n);
        const double ar = n_real ? area_real / static_cast<double>(n_real) : std::nan("");
        const double af = n_fake ? area_fake / static_cast<double>(n_fake) : std::nan("");
        const double acc = n_real ? static_cast<double>(correct) / static_cast<double>(n_real) : std::nan("");
        const auto now = clock::now();
        const double secs = std::chrono::duration<double>(now - t_log).count();
        const double ips = secs > 0 ? static_cast<double>(images_since) / secs : 0.0;
        const double eta = ips > 0 ? static_cast<double>((opt.steps - step) * opt.batch) / ips : 0.0;
        t_log = now;
        images_since = 0;
        const ObjectiveTerms& t = r.terms;
        std::printf(
            "step %lld/%lld  %.1f img/s  ETA %.0f s  total %.4f  area %.4f  smooth %.4f  preserver %.4f  "
            "destroyer %.4f  selector %.4f  |  mask real %.3f  fake %.3f  bb acc on Phi(X,M) %.3f (clean %.3f)\n",
            static_cast<long long>(step), static_cast<long long>(opt.steps), ips, eta, t.total, t.area,
            t.smoothness, t.preserver, t.destroyer, t.selector, ar, af, acc, acc_clean);
        std::fflush(stdout);
        log << "{\"step\":" << step << ",\"total\":" << num(t.total) << ",\"area\":" << num(t.area)
            << ",\"smoothness\":" << num(t.smoothness) << ",\"preserver\":" << num(t.preserver)
            << ",\"destroyer\":" << num(t.destroyer) << ",\"selector\":" << num(t.selector)
            << ",\"mask_area_real\":" << num(ar) << ",\"mask_area_fake\":" << num(af)
            << ",\"bb_acc_preserved\":" << num(acc) << ",\"bb_acc_clean\":" << num(acc_clean) << ",\"images_per_s\":" << num(ips) << ",\"eta_s\":" << num(eta)
            << "}\n";
        log.flush();
      }
      if (dist.leader() && !opt.eval_shards.empty() && (last || (opt.eval_every > 0 && step % opt.eval_every == 0))) {
        evaluate(arena, ctx, objective, K, step, log);
        t_log = clock::now();  // the evaluation does not count against the training speed
      }
      const bool stop = dp->any(g_stop != 0);  // a signal to any rank stops all after this step
      if (last || stop || (opt.checkpoint_every > 0 && step % opt.checkpoint_every == 0)) {
        if (dp->active()) {
          // The masker's frozen values are its batch-norm running statistics (every module of it is
          // trainable). They follow each rank's own batches and change nothing trained (training
          // normalises with batch statistics): the checkpoint holds their mean over the ranks, and
          // every rank continues from it, as a resumed run does.
          Tensor running = masker->params().flat_frozen_values();
          if (running.numel() > 0) dp->average(running);
          // Every rank applied the same averaged gradient to the same start: a difference is a bug (or
          // ranks started with different options), and a checkpoint of rank 0's parameters would hide it.
          SAL_CHECK(dp->in_sync(masker->params().flat_values()), "data parallel: the ranks' parameters differ after step ",
                    step, "; not writing a checkpoint");
        }
        if (dist.leader()) save_checkpoint(step, pos_trained);
        else save_rank_state(step, pos_trained);
        if (stop || last)  // each rank names the file it wrote
          std::printf("checkpoint after step %lld: %s\n", static_cast<long long>(step),
                      (dist.leader() ? ckpt_path : rank_state_path()).c_str());
      }
      if (stop) {
        std::printf("stopped by a signal after step %lld\n", static_cast<long long>(step));
        return 0;
      }
    }
    return 0;
  }
};

}  // namespace

// Unset options (-1) take the preset's value: CIFAR trains on whole 32 px images (flip only) with a
// sigma-3 blur (the paper's sigma 10 at 224 px, scaled); MobileNet on 224 px random-resized crops of
// 35-100% of the image with the paper's sigma-10 blur.
void resolve_preset_defaults(Options& o) {
  const bool cifar = o.preset == "cifar";
  auto pick = [](auto& v, auto c, auto m, bool is_cifar) {
    if (v < 0) v = is_cifar ? c : m;
  };
  pick(o.image_size, int64_t{32}, int64_t{224}, cifar);
  pick(o.blur_sigma, 3.0, 10.0, cifar);
  pick(o.blur_ksize, 13, 55, cifar);
  pick(o.scale_min, 1.0, 0.35, cifar);
  pick(o.ratio_min, 1.0, 3.0 / 4.0, cifar);
  pick(o.ratio_max, 1.0, 4.0 / 3.0, cifar);
}

int main(int argc, char** argv) {
  CLI::App app{"sal_train: trains a saliency masker against a frozen black box (CPU or CUDA)"};
  Options o;
  std::string area_text;
  app.add_option("--shards", o.shards, "WebDataset shards from sal_make_shards: a folder, a file or a glob")->required();
  app.add_option("--black-box", o.black_box, "black-box weights (.safetensors); the frozen encoder too (cifar)")
      ->required();
  app.add_option("--preset", o.preset, "masker preset: cifar (CIFAR ResNet black box) or mobilenet (MobileNet v1)")
      ->check(CLI::IsMember({"cifar", "mobilenet"}))
      ->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", o.steps, "total steps (a resumed run goes on up to this step)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the masker init, the reader, fake labels and evidence removal")
      ->capture_default_str();
  app.add_option("--loss", o.loss, "objective: released (DESIGN's working recipe) or paper")
      ->check(CLI::IsMember({"paper", "released"}))
      ->capture_default_str();
  app.add_option("--area-weight", o.area_weight, "area term weight (default: 4 for released, 1e-3 for paper)");
  app.add_option("--embedding-init-scale", o.embedding_init_scale,
                 "the class embedding starts as the classifier weights times this")
      ->capture_default_str();
  app.add_option("--smooth-weight", o.smooth_weight,
                 "smoothness weight (default: released 0.5, paper TV weight 10)");
  app.add_option("--preserver-weight", o.preserver_weight, "preserver weight (default: released 0.3; paper 1, fixed)");
  app.add_option("--destroyer-weight", o.destroyer_weight, "destroyer weight (default: released 1, paper 5)");
  app.add_option("--selector-weight", o.selector_weight, "auxiliary selector loss weight (0 disables)")
      ->capture_default_str();
  app.add_option("--fake-prob", o.fake_prob, "probability that a sample's selector is a random wrong class")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--blur-prob", o.blur_prob,
                 "evidence removal: probability of the blur (else a random colour plus noise, which leaves no context)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--blur-sigma", o.blur_sigma, "evidence removal: Gaussian blur sigma in pixels (default 3 cifar, 10 mobilenet)");
  app.add_option("--blur-ksize", o.blur_ksize, "evidence removal: blur kernel size, odd (default 13 cifar, 55 mobilenet)");
  app.add_option("--scale-min", o.scale_min,
                 "augmentation: smallest crop area fraction (1: whole image + flip; default 1 cifar, 0.35 mobilenet)")
      ->check(CLI::Range(0.01, 1.0));
  app.add_option("--ratio-min", o.ratio_min, "augmentation: smallest crop aspect ratio (default 1 cifar, 3/4 mobilenet)")
      ->check(CLI::Range(0.1, 10.0));
  app.add_option("--ratio-max", o.ratio_max, "augmentation: largest crop aspect ratio (default 1 cifar, 4/3 mobilenet)")
      ->check(CLI::Range(0.1, 10.0));
  app.add_option("--embedding-only-steps", o.embedding_only_steps,
                 "phase 1: the first N steps train only the class embedding")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--freeze-embedding", o.freeze_embedding,
               "the class embedding stays the classifier weights x --embedding-init-scale (also with --init-masker)");
  app.add_option("--area-weight-start", o.area_weight_start,
                 "area weight at step 1, rising linearly to --area-weight over --area-ramp-steps");
  app.add_option("--area-ramp-steps", o.area_ramp_steps, "steps of the area weight ramp (0: constant)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--widths", o.widths,
                 "upsampler output channels, coarsest first (default: the preset's; mobilenet 256 128 64, cifar 64)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  app.add_flag("--smooth-on-head", o.smooth_on_head,
               "smoothness term on the head-resolution mask (56x56 at 224) instead of the full mask");
  app.add_option("--out", o.out, "output folder: checkpoint.safetensors and log.jsonl")->required();
  app.add_option("--checkpoint-every", o.checkpoint_every, "checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--log-every", o.log_every, "progress line and log.jsonl entry every N steps")
      ->capture_default_str();
  app.add_option("--eval-shards", o.eval_shards, "held-out shards: health numbers every --eval-every steps and at the end");
  app.add_option("--eval-every", o.eval_every, "evaluate on --eval-shards every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--eval-images", o.eval_images, "images of --eval-shards to evaluate on")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from OUT/checkpoint.safetensors");
  app.add_option("--device", o.device, "where the masker trains: cpu (OpenMP + BLAS) or cuda (GPU LOCAL_RANK: 0 unless data parallel)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_flag("--eager", o.eager,
               "with --device cuda: run every training step eagerly (default: after one eager step the step is "
               "captured as a CUDA graph and replayed: the same kernels, one launch)");
  app.add_option("--init-masker", o.init_masker,
                 "fine-tune: start from this masker file (e.g. weights/*_masker.safetensors) with a fresh Adam state; "
                 "ignored with --resume (the checkpoint holds the weights)")
      ->check(CLI::ExistingFile);
  app.add_option("--image-size", o.image_size, "training image size (default 32 cifar, 224 mobilenet)");
  app.add_option("--threads", o.threads, "reader decode threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--debug-nan-at-step", o.debug_nan_at_step, "for tests only: pretend the loss of step K is NaN")
      ->group("");
  CLI11_PARSE(app, argc, argv);

  resolve_preset_defaults(o);
  if (o.freeze_embedding && o.embedding_only_steps > 0) {
    std::fprintf(stderr, "error: --freeze-embedding with --embedding-only-steps %lld: nothing would train in phase 1\n",
                 static_cast<long long>(o.embedding_only_steps));
    return 2;
  }
  try {
    Trainer tr;
    tr.opt = o;
    tr.ocfg = o.loss == "paper" ? ObjectiveConfig::paper() : ObjectiveConfig::released();
    tr.ocfg.area_weight = o.area_weight >= 0 ? o.area_weight : (o.loss == "paper" ? 1e-3 : 4.0);
    tr.ocfg.selector_weight = o.selector_weight;
    tr.ocfg.blur_sigma = o.blur_sigma;
    tr.ocfg.blur_prob = o.blur_prob;
    tr.ocfg.blur_ksize = o.blur_ksize;
    tr.ocfg.smooth_on_head = o.smooth_on_head;
    if (o.smooth_weight >= 0) tr.ocfg.smooth_weight = tr.ocfg.tv_weight = o.smooth_weight;
    if (o.preserver_weight >= 0) tr.ocfg.preserver_weight = o.preserver_weight;
    if (o.destroyer_weight >= 0) tr.ocfg.destroyer_weight = o.destroyer_weight;
    tr.config = config_text(o, tr.ocfg);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const int rc = tr.run();
    print_op_profile_if_enabled();  // SAL_PROFILE_OPS=1 (with --eager on CUDA: graph replays run no ops)
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
