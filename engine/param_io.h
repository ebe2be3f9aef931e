// Saving and loading a ParamStore as safetensors.
//
// save_params writes every parameter (trainable or frozen) under its store name, in add() order, with the
// store's dtype; a store on CUDA is copied to the host in one transfer first.
// load_params checks the whole file against the store before it copies anything, so a failed load leaves the
// store as it was, and it reports every problem in one message, one line each:
//   "<file>: missing tensor 'x'"
//   "<file>: unexpected tensor 'y' (not a parameter of the model)"     (strict only)
//   "<file>: tensor 'head.weight' has shape [2,64,1,1], expected [2,192,1,1]"
// Values are copied into the store with Tensor::copy_from (host to device for a CUDA store); a file dtype that
// differs from the store's (F64, F16, BF16 into an F32 store, ...) is converted on the CPU first.
#pragma once
#include <map>
#include <string>

#include "engine/params.h"
#include "engine/safetensors.h"

namespace sal {

struct LoadOptions {
  // Every file tensor under the prefix must be a parameter of the store.
  bool strict = true;
  // The file's name for parameter "p" is prefix + "p" (e.g. "module." for checkpoints saved from a wrapper,
  // or "encoder." to load one part of a larger checkpoint). File tensors whose names do not start with the
  // prefix are ignored, in strict mode too.
  std::string prefix;
};

void save_params(const ParamStore& store, const std::string& path,
                 const std::map<std::string, std::string>& metadata = {});

// Copies each parameter of the (finalized) store from the file, by name. Throws sal::Error listing every
// missing, unexpected, misshapen or unconvertible tensor; nothing is copied then.
void load_params(ParamStore& store, const SafeTensorsFile& file, const LoadOptions& options = {});

}  // namespace sal
