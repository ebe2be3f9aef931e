// The smallest application of the engine as a library: SaliencyEngine (layers/saliency_engine.h) on image
// files, printing each image's top-1 class and the box of its mask. Built with everything else and run by
// ctest on samples/, so the API the README shows keeps compiling and working.
//
//   saliency_engine_example [--device cuda] MASKER IMAGE...
#include <cstdio>
#include <string>
#include <vector>

#include "engine/device_session.h"
#include "engine/error.h"
#include "engine/image.h"
#include "layers/saliency_engine.h"
#include "layers/saliency_eval.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string device = "cpu";
  if (args.size() >= 2 && args[0] == "--device") {
    device = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: saliency_engine_example [--device cpu|cuda] MASKER IMAGE...\n");
    return 2;
  }
  try {
    const sal::DeviceSession dev(device);
    const int64_t n = static_cast<int64_t>(args.size()) - 1;
    sal::SaliencyEngine::Config config;  // black_box: the file the masker names; capture: CUDA graphs
    config.masker = args[0];
    config.max_batch = n;
    sal::SaliencyEngine engine(dev, config);
    const int64_t S = engine.image_size();
    // The images as one batch [n,3,S,S] in [0,1], each resized to the masker's size.
    sal::Tensor images = sal::Tensor::empty(sal::Shape{n, 3, S, S});
    for (int64_t i = 0; i < n; ++i) {
      const sal::Tensor img = sal::image_to_tensor(sal::read_image(args[1 + static_cast<size_t>(i)]), S, S);
      images.slice0(i, 1).copy_from(img.reshape(sal::Shape{1, 3, S, S}));
    }
    const sal::SaliencyEngine::Result r = engine.run(images);
    const std::vector<std::string>& names = engine.black_box_spec().class_names;
    for (int64_t i = 0; i < n; ++i) {
      const int k = r.top1[static_cast<size_t>(i)];
      const float* mask = r.masks.slice0(i, 1).data<float>();
      const sal::Box box = sal::mask_box(mask, S, S, 0.5, false);
      double area = 0;
      for (int64_t p = 0; p < S * S; ++p) area += mask[p];
      const char* name = static_cast<size_t>(k) < names.size() ? names[static_cast<size_t>(k)].c_str() : "?";
      std::printf("%s: class %d (%s), log p %.3f, mask area %.3f, box [%d,%d,%d,%d] of %lldx%lld\n",
                  args[1 + static_cast<size_t>(i)].c_str(), k, name, r.log_probs.slice0(i, 1).data<float>()[k],
                  area / static_cast<double>(S * S), box.x0, box.y0, box.x1, box.y1, static_cast<long long>(S),
                  static_cast<long long>(S));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
