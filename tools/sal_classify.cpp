// sal_classify: the top-k classes of a converted classifier for each image, using only the engine
// (JPEG/PNG decoding, load_network, forward on the CPU or a CUDA device).
//
//   sal_classify --weights weights/mobilenet_v1_0.75_224.safetensors samples/*.JPEG
//
// Each image is decoded to RGB in [0,1], resized bilinearly to the network's input size (from the
// weight file's metadata), normalised by the network's own convention and classified; an unreadable
// image is reported and skipped, and the exit status is non-zero if any image failed.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "engine/image.h"
#include "layers/network.h"

using namespace sal;

int main(int argc, char** argv) {
  CLI::App app{"Top-k classes of a classifier for each image"};
  std::string weights = "weights/mobilenet_v1_0.75_224.safetensors";
  std::vector<std::string> images;
  int top_k = 5;
  app.add_option("--weights", weights, "converted classifier (safetensors with metadata)")->capture_default_str();
  app.add_option("--top", top_k, "classes to print per image")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("images", images, "JPEG or PNG files")->required();
  CLI11_PARSE(app, argc, argv);

  int failed = 0;
  try {
    std::unique_ptr<Network> net = load_network(weights);
    const InputSpec& spec = net->input_spec();
    std::printf("%s: %s, input %lldx%lld, %lld classes\n", weights.c_str(), spec.arch.c_str(),
                static_cast<long long>(spec.size), static_cast<long long>(spec.size),
                static_cast<long long>(spec.num_classes));
    Ctx ctx;
    for (const std::string& path : images) {
      try {
        Tensor x = image_to_tensor(read_image(path), spec.size, spec.size).reshape(Shape{1, 3, spec.size, spec.size});
        Tensor prob = softmax(ctx, net->forward(ctx, net->normalize(ctx, x)));
        std::vector<double> p = prob.values();
        std::vector<int> order(p.size());
        std::iota(order.begin(), order.end(), 0);
        int k = std::min<int>(top_k, static_cast<int>(p.size()));
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return p[a] > p[b]; });
        std::printf("%s\n", path.c_str());
        for (int i = 0; i < k; ++i)
          std::printf("  %5.1f%%  %4d  %s\n", 100 * p[order[i]], order[i], spec.class_names[order[i]].c_str());
      } catch (const std::exception& e) {
        ++failed;
        std::fprintf(stderr, "error: %s\n", e.what());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return failed ? 1 : 0;
}
