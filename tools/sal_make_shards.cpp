// sal_make_shards: packs a labelled image set into WebDataset tar shards for engine/shard_reader.h.
//
//   sal_make_shards --tar ../shared/data/cifar10/train.tar --out shards/cifar-train --per-shard 5000 --shuffle
//   sal_make_shards --list ../shared/data/imagenet-sample/labels.tsv --out shards/imagenet-sample --per-shard 250
//   sal_make_shards --tree photos/ [--labels classes.tsv] --out shards/photos
//
// Sources (exactly one):
//   --tree DIR   one sub-folder per class holding *.jpg / *.jpeg / *.png (recursively); the class index
//                is the folder's position in the sorted folder names, or from --labels: a TSV of
//                "<folder><TAB><index>" lines ('#' comments and blank lines ignored).
//   --tar FILE   a tar of <class>/<file> entries (the CIFAR-10 tars); classes in sorted name order.
//   --list TSV   a labels table with a header row naming the columns "file" and "label" (imagenet-sample's
//                labels.tsv, imagenet-val's annotations.tsv); a file is looked up relative to the table's
//                folder, then in its images/ sub-folder, or under --images-root when given.
// Each sample is written as KEY.jpg or KEY.png (the original bytes, format by their signature, not
// re-encoded) + KEY.cls (the decimal class index); KEY = the sample's 9-digit number in the written order,
// '_', and its source name with every character outside [A-Za-z0-9_-] replaced by '_'. --shuffle (with
// --seed) permutes the samples before writing; --limit N writes only the first N of them (after the
// shuffle: a random subset). Shards PREFIX-000000.tar, ... are written atomically (temporary + rename); one summary
// line per shard goes to stdout and to PREFIX-index.tsv.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "engine/error.h"
#include "engine/image.h"
#include "engine/label_table.h"
#include "engine/tar.h"
#include "engine/tar_writer.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

struct Source {
  std::string name;  // path or tar entry name (for keys and messages)
  TarEntry entry;    // when read from the --tar archive
  int label = 0;
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_name(const fs::path& p) {
  const std::string e = lower(p.extension().string());
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

std::vector<Source> tree_sources(const std::string& dir, const std::string& labels_tsv) {
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  SAL_CHECK(!classes.empty(), dir, ": no class folders");
  std::map<std::string, int> index;
  if (labels_tsv.empty()) {
    for (size_t i = 0; i < classes.size(); ++i) index[classes[i]] = static_cast<int>(i);
  } else {
    std::ifstream in(labels_tsv);
    SAL_CHECK(in, labels_tsv, ": cannot open");
    index = read_class_index(in, labels_tsv);
  }
  std::vector<Source> out;
  for (const std::string& c : classes) {
    auto it = index.find(c);
    SAL_CHECK(it != index.end(), labels_tsv, ": no class index for the folder '", c, "' of ", dir);
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(fs::path(dir) / c))
      if (e.is_regular_file() && is_image_name(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (std::string& f : files) {
      Source src;
      src.name = std::move(f);
      src.label = it->second;
      out.push_back(std::move(src));
    }
  }
  return out;
}

std::vector<Source> tar_sources(const std::string& path) {
  TarReader tar(path);
  std::vector<Source> out;
  std::map<std::string, int> classes;
  TarEntry e;
  while (tar.next(e)) {
    const size_t slash = e.name.find('/');
    SAL_CHECK(slash != std::string::npos && slash > 0, path, ": entry '", e.name, "' (offset ", e.header_offset,
              ") is not <class>/<file>");
    classes[e.name.substr(0, slash)] = 0;
    Source src;
    src.name = e.name;
    src.entry = e;
    out.push_back(std::move(src));
  }
  SAL_CHECK(!out.empty(), path, ": no files");
  int i = 0;
  for (auto& kv : classes) kv.second = i++;
  for (Source& s : out) s.label = classes.at(s.name.substr(0, s.name.find('/')));
  return out;
}

std::vector<Source> list_sources(const std::string& tsv, const std::string& images_root) {
  std::ifstream in(tsv);
  SAL_CHECK(in, tsv, ": cannot open");
  const fs::path base = fs::path(tsv).parent_path();
  std::vector<Source> out;
  read_label_list(in, tsv, [&](const LabelListRow& r) {
    const std::string& file = r.file;
    fs::path p;
    if (!images_root.empty()) {
      p = fs::path(images_root) / file;
    } else {
      p = base / file;
      if (!fs::exists(p)) p = base / "images" / file;
    }
    SAL_CHECK(fs::is_regular_file(p), tsv, ": line ", r.line, ": image '", file, "' not found (looked for ",
              p.string(), ")");
    Source src;
    src.name = p.string();
    src.label = parse_label(r.label, cat(tsv, ": line ", r.line));
    out.push_back(std::move(src));
  });
  return out;
}

std::string key_for(int64_t i, const std::string& name) {
  char num[32];
  std::snprintf(num, sizeof num, "%09lld_", static_cast<long long>(i));
  std::string stem = name;
  const size_t dot = stem.rfind('.');
  if (dot != std::string::npos && stem.find('/', dot) == std::string::npos) stem.resize(dot);
  // Drop leading "./" and "../" noise, keep the last two path components (class folder and file).
  std::vector<std::string> parts;
  std::istringstream ps(stem);
  std::string part;
  while (std::getline(ps, part, '/'))
    if (!part.empty() && part != "." && part != "..") parts.push_back(part);
  std::string tail = parts.empty() ? "x" : parts.back();
  if (parts.size() >= 2) tail = parts[parts.size() - 2] + "_" + tail;
  for (char& c : tail)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  return num + tail;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Pack a labelled image set into WebDataset tar shards (KEY.jpg/KEY.png + KEY.cls)"};
  std::string tree, labels, tar_path, list, images_root, prefix;
  int64_t per_shard = 1000, limit = 0;
  uint64_t seed = 0;
  bool shuffle = false, quiet = false;
  auto* o_tree = app.add_option("--tree", tree, "class-per-folder image tree")->check(CLI::ExistingDirectory);
  app.add_option("--labels", labels, "with --tree: TSV of <folder><TAB><class index> lines")
      ->check(CLI::ExistingFile)
      ->needs(o_tree);
  auto* o_tar = app.add_option("--tar", tar_path, "tar of <class>/<file> entries (CIFAR-10)")->check(CLI::ExistingFile);
  auto* o_list = app.add_option("--list", list, "labels TSV with 'file' and 'label' columns (ImageNet style)")
                     ->check(CLI::ExistingFile);
  app.add_option("--images-root", images_root, "with --list: folder the 'file' column is relative to")
      ->check(CLI::ExistingDirectory)
      ->needs(o_list);
  o_tree->excludes(o_tar)->excludes(o_list);
  o_tar->excludes(o_list);
  app.add_option("--out", prefix, "shard prefix: writes PREFIX-000000.tar, ... and PREFIX-index.tsv")->required();
  app.add_option("--per-shard", per_shard, "samples per shard")->check(CLI::PositiveNumber);
  app.add_flag("--shuffle", shuffle, "permute the samples before writing");
  app.add_option("--seed", seed, "seed of --shuffle");
  app.add_option("--limit", limit, "write only the first N samples, after --shuffle (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--quiet", quiet, "print only the final summary");
  CLI11_PARSE(app, argc, argv);
  if ((tree.empty() ? 0 : 1) + (tar_path.empty() ? 0 : 1) + (list.empty() ? 0 : 1) != 1) {
    std::fprintf(stderr, "sal_make_shards: give exactly one of --tree, --tar and --list\n");
    return 2;
  }

  try {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Source> sources = !tree.empty()       ? tree_sources(tree, labels)
                                  : !tar_path.empty() ? tar_sources(tar_path)
                                                      : list_sources(list, images_root);
    if (shuffle) {  // Fisher-Yates with our own index mapping: the same order on every platform
      std::mt19937_64 rng(seed);
      for (size_t i = sources.size(); i > 1; --i) std::swap(sources[i - 1], sources[rng() % i]);
    }
    if (limit > 0 && static_cast<size_t>(limit) < sources.size()) sources.resize(static_cast<size_t>(limit));
    const fs::path parent = fs::path(prefix).parent_path();
    if (!parent.empty()) fs::create_directories(parent);

    std::unique_ptr<TarReader> tar = tar_path.empty() ? nullptr : std::make_unique<TarReader>(tar_path);
    ShardWriter writer(prefix, per_shard);
    size_t reported = 0;
    uint64_t image_bytes = 0;
    for (size_t i = 0; i < sources.size(); ++i) {
      const Source& s = sources[i];
      const std::vector<uint8_t> bytes = tar ? tar->read(s.entry) : read_file_bytes(s.name);
      const std::string where = tar ? tar_path + ":" + s.name : s.name;
      const ImageFormat f = sniff_image_format(bytes.data(), bytes.size());
      SAL_CHECK(f != ImageFormat::Unknown, where, ": neither a JPEG nor a PNG (", bytes.size(), " bytes)");
      writer.add(key_for(static_cast<int64_t>(i), s.name), f == ImageFormat::JPEG ? "jpg" : "png", bytes, s.label);
      image_bytes += bytes.size();
      for (; !quiet && reported < writer.shards().size(); ++reported)
        std::printf("%s\n", ShardWriter::summary(writer.shards()[reported]).c_str());
    }
    const std::vector<ShardInfo>& shards = writer.finish();
    for (; !quiet && reported < shards.size(); ++reported)
      std::printf("%s\n", ShardWriter::summary(shards[reported]).c_str());

    // The index: one line per shard, written atomically too.
    const std::string index_path = prefix + "-index.tsv", tmp = index_path + ".tmp";
    {
      std::ofstream idx(tmp, std::ios::trunc);
      SAL_CHECK(idx, tmp, ": cannot create");
      idx << "shard\tsamples\tbytes\tmin_label\tmax_label\tfirst_key\tlast_key\n";
      for (const ShardInfo& s : shards)
        idx << fs::path(s.path).filename().string() << '\t' << s.samples << '\t' << s.bytes << '\t' << s.min_label
            << '\t' << s.max_label << '\t' << s.first_key << '\t' << s.last_key << '\n';
      idx.flush();
      SAL_CHECK(idx, tmp, ": write failed");
    }
    fs::rename(tmp, index_path);

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t total = 0;
    for (const ShardInfo& s : shards) total += s.bytes;
    std::printf("%zu samples (%.1f MB of images) in %zu shards (%.1f MB) in %.2f s: %.0f images/s; index %s\n",
                sources.size(), static_cast<double>(image_bytes) / 1e6, shards.size(), static_cast<double>(total) / 1e6,
                secs, static_cast<double>(sources.size()) / secs, index_path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sal_make_shards: %s\n", e.what());
    return 1;
  }
  return 0;
}
