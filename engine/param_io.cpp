// ParamStore <-> safetensors (see engine/param_io.h).
//
// Saving takes views of the flat value buffer (one device-to-host copy of the whole buffer for a CUDA store),
// so no parameter is copied twice. Loading validates names, shapes and dtypes of the whole file first and only
// then copies: each tensor goes from the mapping straight into its slice of the store when the dtypes match
// (one memcpy, or one host-to-device copy), through a CPU conversion otherwise.
#include "engine/param_io.h"

#include <algorithm>
#include <string>
#include <vector>

namespace sal {

namespace {

bool is_float_file_dtype(const std::string& dt) { return dt == "F32" || dt == "F64" || dt == "F16" || dt == "BF16"; }

bool same_shape(const SafeTensorInfo& in, const Shape& s) {
  if (in.shape.size() != static_cast<size_t>(s.nd)) return false;
  for (int d = 0; d < s.nd; ++d)
    if (in.shape[static_cast<size_t>(d)] != s[d]) return false;
  return true;
}

// The file tensor as a CPU tensor of dtype want (a zero-copy view when the file already holds that dtype).
Tensor host_tensor(const SafeTensorsFile& file, const std::string& name, DType want) {
  const std::string& dt = file.info(name).dtype;
  if (dt == safetensors_dtype_name(want)) return file.tensor(name);
  if (want == DType::F32 || dt == "F16") {
    Tensor f = file.load_f32(name);
    return want == DType::F32 ? f : f.to(want);
  }
  return file.tensor(name).to(want);  // F64/BF16/F32 file into an F64 or BF16 store
}

}  // namespace

void save_params(const ParamStore& store, const std::string& path, const std::map<std::string, std::string>& metadata) {
  SAL_CHECK(store.finalized(), path, ": save_params: the parameter store is not finalized");
  const Tensor flat = store.flat_values();
  const Tensor host = flat.host();
  const size_t esize = dtype_size(flat.dtype());
  NamedTensors list;
  list.reserve(static_cast<size_t>(store.size()));
  for (int i = 0; i < store.size(); ++i) {
    const ParamRef p{i};
    const Tensor v = store.value(p);
    // The parameter's offset in the flat buffer, which is the same in the host copy.
    const size_t offset = static_cast<size_t>(static_cast<const char*>(v.raw()) - static_cast<const char*>(flat.raw()));
    list.emplace_back(store.name(p), host.slice0(static_cast<int64_t>(offset / esize), v.numel()).reshape(v.shape()));
  }
  write_safetensors(path, list, metadata);
}

void load_params(ParamStore& store, const SafeTensorsFile& file, const LoadOptions& options) {
  const std::string& path = file.path();
  SAL_CHECK(store.finalized(), path, ": load_params: the parameter store is not finalized");
  const DType want = store.flat_values().dtype();

  std::vector<std::string> problems;
  // Every parameter must be in the file, with its shape and a float dtype.
  for (int i = 0; i < store.size(); ++i) {
    const ParamRef p{i};
    const std::string file_name = options.prefix + store.name(p);
    if (!file.contains(file_name)) {
      problems.push_back(cat(path, ": missing tensor '", file_name, "'"));
      continue;
    }
    const SafeTensorInfo& in = file.info(file_name);
    if (!same_shape(in, store.shape(p)))
      problems.push_back(
          cat(path, ": tensor '", file_name, "' has shape ", in.shape_str(), ", expected ", store.shape(p).str()));
    if (!is_float_file_dtype(in.dtype))
      problems.push_back(cat(path, ": tensor '", file_name, "' has dtype ", in.dtype,
                             ", expected a float dtype (F32, F64, F16 or BF16) to load into ", dtype_name(want)));
  }
  // Strict: every file tensor under the prefix must be a parameter.
  if (options.strict) {
    for (const std::string& name : file.names()) {
      if (name.compare(0, options.prefix.size(), options.prefix) != 0) continue;
      if (!store.contains(name.substr(options.prefix.size())))
        problems.push_back(cat(path, ": unexpected tensor '", name, "' (not a parameter of the model)"));
    }
  }
  if (!problems.empty()) {
    std::string msg;
    for (const std::string& s : problems) msg += (msg.empty() ? "" : "\n") + s;
    throw Error(msg);
  }

  for (int i = 0; i < store.size(); ++i) {
    const ParamRef p{i};
    Tensor dst = store.value(p);
    dst.copy_from(host_tensor(file, options.prefix + store.name(p), want).reshape(dst.shape()));
  }
}

}  // namespace sal
