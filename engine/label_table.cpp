// Label table parsing (engine/label_table.h), moved out of tools/sal_make_shards unchanged in behaviour so
// that it can be fuzzed on its own.
#include "engine/label_table.h"

#include <algorithm>
#include <sstream>

#include "engine/error.h"

namespace sal {

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream ls(line);
  while (std::getline(ls, cell, '\t')) {
    if (!cell.empty() && cell.back() == '\r') cell.pop_back();
    out.push_back(cell);
  }
  return out;
}

int parse_label(const std::string& text, const std::string& where) {
  int v = -1;
  try {
    size_t used = 0;
    v = std::stoi(text, &used);
    if (used != text.size()) v = -1;
  } catch (const std::exception&) {
    v = -1;
  }
  SAL_CHECK(v >= 0, where, ": label '", text, "' is not a non-negative integer");
  return v;
}

std::map<std::string, int> read_class_index(std::istream& in, const std::string& name) {
  std::map<std::string, int> index;
  std::string line;
  for (int row = 1; std::getline(in, line); ++row) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cells = split_tabs(line);
    SAL_CHECK(cells.size() >= 2, name, ": line ", row, " is not <folder><TAB><index>");
    index[cells[0]] = parse_label(cells[1], cat(name, ": line ", row));
  }
  return index;
}

void read_label_list(std::istream& in, const std::string& name, const std::function<void(const LabelListRow&)>& fn) {
  std::string line;
  SAL_CHECK(std::getline(in, line), name, ": empty (expected a header row naming 'file' and 'label')");
  std::vector<std::string> head = split_tabs(line);
  const auto col = [&](const char* column) {
    auto it = std::find(head.begin(), head.end(), column);
    SAL_CHECK(it != head.end(), name, ": the header row has no '", column, "' column");
    return static_cast<size_t>(it - head.begin());
  };
  const size_t c_file = col("file"), c_label = col("label");
  bool any = false;
  for (int row = 2; std::getline(in, line); ++row) {
    if (line.empty() || line == "\r") continue;
    std::vector<std::string> cells = split_tabs(line);
    SAL_CHECK(cells.size() > std::max(c_file, c_label), name, ": line ", row, " has ", cells.size(), " columns");
    fn(LabelListRow{cells[c_file], cells[c_label], row});
    any = true;
  }
  SAL_CHECK(any, name, ": no images listed");
}

}  // namespace sal
