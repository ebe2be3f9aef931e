// Error type and check macros used everywhere in the engine.
// Every error message carries enough context to act on it: the op or file, and what was wrong.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace sal {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into one message.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace sal

// SAL_CHECK(cond, "what", value, ...): throws sal::Error with the concatenated message when cond is false.
#define SAL_CHECK(cond, ...)            \
  do {                                  \
    if (!(cond)) ::sal::fail(__VA_ARGS__); \
  } while (0)
