// Parser of annotations.tsv / labels.tsv (engine/annotations.h): header-driven columns, strict
// integers (std::from_chars over the whole field), every error naming source, line and column.
#include "engine/annotations.h"

#include <charconv>
#include <limits>
#include <map>

#include "engine/error.h"
#include "engine/image.h"

namespace sal {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    if (at == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, at - start));
    start = at + 1;
  }
}

// Shows a field in a message: quoted, cut to 40 characters, control bytes as '?'.
std::string shown(std::string_view f) {
  std::string s;
  for (char c : f.substr(0, 40)) s += (static_cast<unsigned char>(c) < 32 || c == 127) ? '?' : c;
  if (f.size() > 40) s += "...";
  return "'" + s + "'";
}

// A decimal integer in [lo, hi] filling the whole field (no sign other than '-', no spaces).
bool parse_int(std::string_view f, int lo, int hi, int& out) {
  if (f.empty()) return false;
  long long v = 0;
  const auto [ptr, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (ec != std::errc() || ptr != f.data() + f.size() || v < lo || v > hi) return false;
  out = static_cast<int>(v);
  return true;
}

}  // namespace

Annotations parse_annotations(std::string_view text, const std::string& source) {
  Annotations a;
  a.source = source;
  std::vector<std::string_view> lines = split(text, '\n');
  int header_line = 0;
  std::map<std::string, size_t> col;
  size_t ncols = 0;
  std::map<std::string, int> seen;  // file -> line
  int c_file = -1, c_label = -1, c_w = -1, c_h = -1, c_boxes = -1;
  for (size_t li = 0; li < lines.size(); ++li) {
    std::string_view line = lines[li];
    const int ln = static_cast<int>(li + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::vector<std::string_view> f = split(line, '\t');
    if (header_line == 0) {
      header_line = ln;
      ncols = f.size();
      for (size_t i = 0; i < f.size(); ++i) {
        const std::string name(f[i]);
        SAL_CHECK(!col.count(name), source, ":", ln, ": the header names column ", shown(f[i]), " twice");
        col[name] = i;
      }
      auto find = [&](const char* k) { return col.count(k) ? static_cast<int>(col[k]) : -1; };
      c_file = find("file");
      c_label = find("label");
      c_w = find("orig_width");
      c_h = find("orig_height");
      c_boxes = find("boxes");
      SAL_CHECK(c_file >= 0 && c_label >= 0, source, ":", ln,
                ": the header must name the columns 'file' and 'label' (tab-separated), got ", shown(line));
      const int extra = (c_w >= 0) + (c_h >= 0) + (c_boxes >= 0);
      SAL_CHECK(extra == 0 || extra == 3, source, ":", ln,
                ": the header has only some of 'orig_width', 'orig_height', 'boxes' (all three or none)");
      a.has_boxes = extra == 3;
      continue;
    }
    SAL_CHECK(f.size() == ncols, source, ":", ln, ": ", f.size(), " tab-separated fields, the header has ", ncols);
    AnnotationRow r;
    r.line = ln;
    r.file = std::string(f[static_cast<size_t>(c_file)]);
    SAL_CHECK(!r.file.empty(), source, ":", ln, ": column 'file' is empty");
    const auto [it, fresh] = seen.emplace(r.file, ln);
    SAL_CHECK(fresh, source, ":", ln, ": file ", shown(r.file), " already listed on line ", it->second);
    SAL_CHECK(parse_int(f[static_cast<size_t>(c_label)], 0, std::numeric_limits<int>::max(), r.label), source, ":",
              ln, ": column 'label': ", shown(f[static_cast<size_t>(c_label)]), " is not an integer >= 0");
    if (a.has_boxes) {
      const int lim = static_cast<int>(kMaxImagePixels);
      SAL_CHECK(parse_int(f[static_cast<size_t>(c_w)], 1, lim, r.orig_width), source, ":", ln,
                ": column 'orig_width': ", shown(f[static_cast<size_t>(c_w)]), " is not an integer >= 1");
      SAL_CHECK(parse_int(f[static_cast<size_t>(c_h)], 1, lim, r.orig_height), source, ":", ln,
                ": column 'orig_height': ", shown(f[static_cast<size_t>(c_h)]), " is not an integer >= 1");
      const std::string_view bf = f[static_cast<size_t>(c_boxes)];
      if (!bf.empty()) {
        const std::vector<std::string_view> boxes = split(bf, ';');
        for (size_t bi = 0; bi < boxes.size(); ++bi) {
          const std::vector<std::string_view> v = split(boxes[bi], ',');
          Box b;
          const bool ok = v.size() == 4 && parse_int(v[0], 0, r.orig_width - 1, b.x0) &&
                          parse_int(v[1], 0, r.orig_height - 1, b.y0) && parse_int(v[2], 0, r.orig_width - 1, b.x1) &&
                          parse_int(v[3], 0, r.orig_height - 1, b.y1);
          SAL_CHECK(ok, source, ":", ln, ": column 'boxes': box ", bi + 1, " ", shown(boxes[bi]),
                    " is not x0,y0,x1,y1 with integers inside the ", r.orig_width, "x", r.orig_height, " image");
          SAL_CHECK(b.x0 <= b.x1, source, ":", ln, ": column 'boxes': box ", bi + 1, " ", shown(boxes[bi]),
                    " has x1 < x0");
          SAL_CHECK(b.y0 <= b.y1, source, ":", ln, ": column 'boxes': box ", bi + 1, " ", shown(boxes[bi]),
                    " has y1 < y0");
          r.boxes.push_back(b);
        }
      }
    }
    a.rows.push_back(std::move(r));
  }
  SAL_CHECK(header_line > 0, source, ": empty table (no header line)");
  return a;
}

Annotations read_annotations(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return parse_annotations(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

}  // namespace sal
