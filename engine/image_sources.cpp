// Listing of image files, folders and tars (engine/image_sources.h).
#include "engine/image_sources.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <map>
#include <set>

#include "engine/error.h"
#include "engine/image.h"

namespace sal {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool image_extension(const std::string& name) {
  const std::string e = lower(fs::path(name).extension().string());
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

// "a/b.c.jpg" -> "a/b.c" (the WebDataset key: everything before the last extension).
std::string strip_extension(const std::string& name) {
  const size_t slash = name.rfind('/');
  const size_t dot = name.rfind('.');
  return dot == std::string::npos || (slash != std::string::npos && dot < slash) ? name : name.substr(0, dot);
}

void add_tar(const std::string& path, std::vector<ImageSource>& out) {
  auto tar = std::make_shared<const TarReader>(path);
  const std::vector<TarEntry> entries = TarReader::list(path);
  std::map<std::string, int> labels;
  for (const TarEntry& e : entries) {
    if (lower(fs::path(e.name).extension().string()) != ".cls") continue;
    SAL_CHECK(e.size <= 32, path, ": entry '", e.name, "' (header at byte ", e.header_offset,
              ") is too large for a class index");
    std::vector<uint8_t> b = tar->read(e);
    std::string t(b.begin(), b.end());
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    int v = -1;
    const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    SAL_CHECK(!t.empty() && ec == std::errc() && p == t.data() + t.size() && v >= 0, path, ": entry '", e.name,
              "' (header at byte ", e.header_offset, ") is not a class index: '", t, "'");
    labels[strip_extension(e.name)] = v;
  }
  for (const TarEntry& e : entries) {
    if (!image_extension(e.name)) continue;
    ImageSource s;
    s.name = path + ":" + e.name;
    s.key = e.name;
    s.stem = strip_extension(e.name);
    std::replace(s.stem.begin(), s.stem.end(), '/', '_');
    const auto it = labels.find(strip_extension(e.name));
    if (it != labels.end()) s.label = it->second;
    s.tar = tar;
    s.entry = e;
    out.push_back(std::move(s));
  }
}

ImageSource file_source(const fs::path& p) {
  ImageSource s;
  s.name = p.string();
  s.key = p.filename().string();
  s.stem = p.stem().string();
  s.path = p.string();
  return s;
}

}  // namespace

std::vector<ImageSource> list_image_sources(const std::vector<std::string>& inputs) {
  std::vector<ImageSource> out;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::path p(in);
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> files;
      for (const fs::directory_entry& e : fs::directory_iterator(p))
        if (e.is_regular_file() && image_extension(e.path().filename().string())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      SAL_CHECK(!files.empty(), in, ": no .jpg, .jpeg or .png files in this folder");
      for (const fs::path& f : files) out.push_back(file_source(f));
    } else if (fs::is_regular_file(p, ec)) {
      if (lower(p.extension().string()) == ".tar") {
        const size_t before = out.size();
        add_tar(in, out);
        SAL_CHECK(out.size() > before, in, ": no .jpg, .jpeg or .png entries in this tar");
      } else {
        out.push_back(file_source(p));
      }
    } else {
      fail(in, ": no such file or folder");
    }
  }
  std::set<std::string> used;
  for (ImageSource& s : out) {
    std::string stem = s.stem.empty() ? std::string("image") : s.stem;
    for (int k = 2; used.count(stem); ++k) stem = s.stem + "_" + std::to_string(k);
    used.insert(stem);
    s.stem = stem;
  }
  return out;
}

std::vector<uint8_t> read_source(const ImageSource& s) {
  if (s.tar) return s.tar->read(s.entry);
  return read_file_bytes(s.path);
}

}  // namespace sal
