// Constructors of the networks the engine knows, by architecture. Each builds the network with
// zero parameters on `device`; Network::load (or load_network) fills them from a file.
#pragma once
#include <memory>

#include "layers/network.h"

namespace sal {

std::unique_ptr<Network> make_resnet50(const InputSpec& spec, Device device);       // torchvision v1.5
std::unique_ptr<Network> make_googlenet(const InputSpec& spec, Device device);      // torchvision, no aux heads
std::unique_ptr<Network> make_alexnet(const InputSpec& spec, Device device);        // torchvision
std::unique_ptr<Network> make_mobilenet_v1(const InputSpec& spec, Device device);   // 0.75, TF.js names
std::unique_ptr<Network> make_cifar_resnet(const InputSpec& spec, Device device, int depth);  // 6n+2, option A

// By spec.arch ("resnet50", "googlenet", "alexnet", "mobilenet_v1_0.75_224", "cifar_resnet20",
// "cifar_resnet56", "cifar_resnet<6n+2>"); null for an unknown arch.
std::unique_ptr<Network> make_network(const InputSpec& spec, Device device);

}  // namespace sal
