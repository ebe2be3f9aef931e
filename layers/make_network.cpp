#include "layers/networks.h"

namespace sal {

std::unique_ptr<Network> make_network(const InputSpec& spec, Device device) {
  const std::string& a = spec.arch;
  if (a == "resnet50") return make_resnet50(spec, device);
  if (a == "googlenet") return make_googlenet(spec, device);
  if (a == "alexnet") return make_alexnet(spec, device);
  if (a == "mobilenet_v1_0.75_224") return make_mobilenet_v1(spec, device);
  const std::string cifar = "cifar_resnet";
  if (a.rfind(cifar, 0) == 0) {
    int depth = 0;
    try {
      depth = std::stoi(a.substr(cifar.size()));
    } catch (const std::exception&) {
      return nullptr;
    }
    SAL_CHECK(depth >= 8 && (depth - 2) % 6 == 0, "arch '", a, "': a CIFAR ResNet has depth 6n+2");
    return make_cifar_resnet(spec, device, depth);
  }
  return nullptr;
}

}  // namespace sal
