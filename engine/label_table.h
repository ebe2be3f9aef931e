// Label tables read by tools/sal_make_shards (and fuzzed by tests/fuzz/fuzz_labels.cpp): tab-separated text
// from outside the program, parsed here so that every malformed line gives an error naming the table and the
// line, never a crash or a silent misreading.
//
//   class index  ("--tree DIR --labels TSV"): "<folder><TAB><index>" lines; '#' comments and blank lines are
//                ignored; a later line for the same folder replaces an earlier one.
//   label list   ("--list TSV"): a header row naming the columns "file" and "label" (others are ignored),
//                then one row per image; blank rows are ignored.
// Cells are split on tabs; a trailing '\r' (CRLF files) is dropped from each cell.
#pragma once
#include <functional>
#include <istream>
#include <map>
#include <string>
#include <vector>

namespace sal {

// The tab-separated cells of one line.
std::vector<std::string> split_tabs(const std::string& line);

// A class index or label: a non-negative decimal int (the whole text). Errors name `where` and the text.
int parse_label(const std::string& text, const std::string& where);

// "<folder><TAB><index>" lines -> folder -> index. `name` is what errors call the table.
std::map<std::string, int> read_class_index(std::istream& in, const std::string& name);

// One row of a label list: the "file" cell, the "label" cell as written (parse it with parse_label), and
// the row's line number in the table (the header is line 1).
struct LabelListRow {
  std::string file, label;
  int line = 0;
};
// Calls fn on a label list's rows in table order, each as soon as it is read (so an error fn raises for a
// row comes before any error of a later row). Errors: an empty table, a header without "file" or "label",
// a row with too few columns, no rows at all; each names `name` (and the line).
void read_label_list(std::istream& in, const std::string& name, const std::function<void(const LabelListRow&)>& fn);

}  // namespace sal
