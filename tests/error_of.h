// The message of the sal::Error a call throws, for tests that check error text
// (test_image.cpp, test_tar.cpp).
#pragma once
#include <functional>
#include <string>

#include "engine/error.h"

namespace sal::test {

// fn()'s sal::Error message, or "(no error)" when it returns; other exceptions propagate.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace sal::test
