// Saving and loading trained maskers (layers/masker_io.h).
#include "layers/masker_io.h"

#include <sstream>

#include "engine/param_io.h"
#include "engine/safetensors.h"

namespace sal {

namespace {

constexpr const char* kFormat = "sal masker v1";

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::string num(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

struct Meta {
  const std::string& path;
  const std::map<std::string, std::string>& md;

  const std::string& text(const char* key) const {
    auto it = md.find(key);
    SAL_CHECK(it != md.end(), path, ": masker metadata '", key, "' is missing");
    return it->second;
  }
  int64_t integer(const char* key) const {
    const std::string& s = text(key);
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAL_CHECK(used == s.size() && !s.empty(), path, ": masker metadata '", key, "' is not an integer: '", s, "'");
    return v;
  }
  double real(const char* key) const {
    const std::string& s = text(key);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAL_CHECK(used == s.size() && !s.empty(), path, ": masker metadata '", key, "' is not a number: '", s, "'");
    return v;
  }
  std::vector<int64_t> list(const char* key) const {
    std::vector<int64_t> v;
    std::stringstream ss(text(key));
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t used = 0;
      int64_t x = 0;
      try {
        x = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      SAL_CHECK(used == item.size() && !item.empty() && x > 0, path, ": masker metadata '", key,
                "' must be positive integers separated by commas, got '", text(key), "'");
      v.push_back(x);
    }
    return v;
  }
};

}  // namespace

std::map<std::string, std::string> masker_metadata(const Masker& masker, const MaskerFileInfo& info) {
  const MaskerConfig& c = masker.config();
  return {{"format", kFormat},
          {"num_classes", std::to_string(c.num_classes)},
          {"feature_channels", join(c.feature_channels)},
          {"widths", join(c.widths)},
          {"bottlenecks", std::to_string(c.bottlenecks)},
          {"upsample", c.upsample == UpsampleMode::PixelShuffle ? "pixel_shuffle" : "conv_transpose"},
          {"skip_channels", std::to_string(c.skip_channels)},
          {"bn_eps", num(c.bn_eps)},
          {"mask_eps", num(c.mask_eps)},
          {"encoder_channels", join(c.encoder_channels)},
          {"black_box", info.black_box},
          {"black_box_arch", info.black_box_arch},
          {"image_size", std::to_string(info.image_size)},
          {"training", info.training}};
}

void save_masker(const Masker& masker, const MaskerFileInfo& info, const std::string& path) {
  save_params(masker.params(), path, masker_metadata(masker, info));
}

std::unique_ptr<Masker> load_masker(const std::string& path, Device device, MaskerFileInfo* info) {
  SafeTensorsFile file(path);
  const Meta m{path, file.metadata()};
  SAL_CHECK(m.text("format") == kFormat, path, ": not a masker file (format '", m.text("format"), "', expected '",
            kFormat, "')");
  MaskerConfig c;
  c.num_classes = m.integer("num_classes");
  c.feature_channels = m.list("feature_channels");
  c.widths = m.list("widths");
  c.bottlenecks = static_cast<int>(m.integer("bottlenecks"));
  const std::string& up = m.text("upsample");
  SAL_CHECK(up == "pixel_shuffle" || up == "conv_transpose", path, ": masker metadata 'upsample' must be "
            "pixel_shuffle or conv_transpose, got '", up, "'");
  c.upsample = up == "pixel_shuffle" ? UpsampleMode::PixelShuffle : UpsampleMode::ConvTranspose;
  c.skip_channels = m.integer("skip_channels");
  c.bn_eps = m.real("bn_eps");
  c.mask_eps = m.real("mask_eps");
  c.encoder_channels = m.list("encoder_channels");
  // No random draw (load_params fails unless the file has every parameter) and no gradient buffer.
  auto masker = std::make_unique<Masker>(c, device, DType::F32, MaskerInit::ForLoading);
  load_params(masker->params(), file);
  if (info) {
    info->black_box = m.text("black_box");
    info->black_box_arch = m.text("black_box_arch");
    info->image_size = m.integer("image_size");
    SAL_CHECK(info->image_size > 0, path, ": masker metadata 'image_size' must be positive");
    info->training = m.text("training");
  }
  return masker;
}

void check_masker_black_box(const MaskerFileInfo& info, const std::string& masker_path, const Network& black_box,
                            const std::string& black_box_path) {
  SAL_CHECK(info.black_box_arch.empty() || info.black_box_arch == black_box.input_spec().arch, masker_path,
            ": the masker was trained against a '", info.black_box_arch, "' black box (", info.black_box, "), but ",
            black_box_path, " is a '", black_box.input_spec().arch, "'");
}

}  // namespace sal
