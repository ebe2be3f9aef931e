#include "layers/network.h"

#include <nlohmann/json.hpp>

#include "engine/param_io.h"
#include "engine/safetensors.h"
#include "layers/networks.h"

namespace sal {

namespace {

const std::string& meta(const SafeTensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  SAL_CHECK(it != f.metadata().end(), f.path(), ": metadata key '", key,
            "' is missing (convert the weights with tools/convert_weights.py)");
  return it->second;
}

double meta_number(const SafeTensorsFile& f, const std::string& key) {
  const std::string& v = meta(f, key);
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used == v.size()) return d;
  } catch (const std::exception&) {
  }
  fail(f.path(), ": metadata '", key, "' = '", v, "' is not a number");
}

void meta_triple(const SafeTensorsFile& f, const std::string& key, float out[3]) {
  const std::string& v = meta(f, key);
  size_t pos = 0;
  for (int i = 0; i < 3; ++i) {
    size_t comma = v.find(',', pos);
    std::string part = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      out[i] = std::stof(part);
    } catch (const std::exception&) {
      fail(f.path(), ": metadata '", key, "' = '", v, "' is not three comma-separated numbers");
    }
    SAL_CHECK((i < 2) == (comma != std::string::npos), f.path(), ": metadata '", key, "' = '", v,
              "' is not three comma-separated numbers");
    pos = comma + 1;
  }
}

}  // namespace

InputSpec InputSpec::from_metadata(const SafeTensorsFile& f) {
  InputSpec s;
  s.arch = meta(f, "arch");
  s.size = static_cast<int64_t>(meta_number(f, "input_size"));
  const std::string& range = meta(f, "input_range");
  if (range == "minus1_1") {
    s.minus1_1 = true;
  } else if (range == "0_1") {
    meta_triple(f, "mean", s.mean);
    meta_triple(f, "std", s.std);
    for (float v : s.std) SAL_CHECK(v > 0, f.path(), ": metadata 'std' has a non-positive entry");
  } else {
    fail(f.path(), ": metadata 'input_range' = '", range, "' (expected 0_1 or minus1_1)");
  }
  s.transform_input = meta(f, "transform_input") == "1";
  if (f.metadata().count("bn_eps")) s.bn_eps = meta_number(f, "bn_eps");
  s.num_classes = static_cast<int64_t>(meta_number(f, "num_classes"));
  nlohmann::json names;
  try {
    names = nlohmann::json::parse(meta(f, "class_names"));
  } catch (const nlohmann::json::exception& e) {
    fail(f.path(), ": metadata 'class_names' is not JSON: ", e.what());
  }
  SAL_CHECK(names.is_array() && static_cast<int64_t>(names.size()) == s.num_classes, f.path(),
            ": metadata 'class_names' is not an array of num_classes (", s.num_classes, ") names");
  for (const auto& n : names) {
    SAL_CHECK(n.is_string(), f.path(), ": metadata 'class_names' holds a non-string");
    s.class_names.push_back(n.get<std::string>());
  }
  return s;
}

void InputSpec::affine(float scale[3], float shift[3]) const {
  for (int c = 0; c < 3; ++c) {
    if (minus1_1) {
      scale[c] = 2.f;
      shift[c] = -1.f;
    } else {
      scale[c] = 1.f / std[c];
      shift[c] = -mean[c] / std[c];
    }
  }
}

void Network::finish(Device device, DType dtype) {
  params_.finalize(device, dtype);
  float scale[3], shift[3];
  spec_.affine(scale, shift);
  norm_scale_ = Tensor::from_values({scale[0], scale[1], scale[2]}, Shape{1, 3, 1, 1}, dtype).to(device);
  norm_shift_ = Tensor::from_values({shift[0], shift[1], shift[2]}, Shape{1, 3, 1, 1}, dtype).to(device);
}

Tensor Network::normalize(Ctx& ctx, const Tensor& images) {
  SAL_CHECK(images.ndim() == 4 && images.dim(1) == 3, spec_.arch, ": images must be [N,3,H,W], got ", images.desc());
  return add(ctx, mul(ctx, images, norm_scale_), norm_shift_);
}

Tensor Network::normalize_backward(Ctx& ctx, const Tensor& dinput) { return mul(ctx, dinput, norm_scale_); }

void Network::load(const SafeTensorsFile& file) {
  auto it = file.metadata().find("arch");
  SAL_CHECK(it != file.metadata().end() && it->second == spec_.arch, file.path(), ": holds arch '",
            it == file.metadata().end() ? std::string("(none)") : it->second, "', this network is '", spec_.arch, "'");
  load_params(params_, file);
}

std::unique_ptr<Network> load_network(const std::string& path, Device device) {
  SafeTensorsFile file(path);
  InputSpec spec = InputSpec::from_metadata(file);
  std::unique_ptr<Network> net = make_network(spec, device);
  SAL_CHECK(net, path, ": unknown arch '", spec.arch, "'");
  net->load(file);
  return net;
}

}  // namespace sal
