// Tests of the annotations.tsv / labels.tsv parser (engine/annotations.h): both layouts of
// ../shared/data, header-driven columns, CRLF and blank lines, and an error naming source, line and
// column for each kind of malformed input; the real imagenet-val table parses with 1,000 rows.
#include <doctest/doctest.h>

#include <filesystem>

#include "engine/annotations.h"
#include "engine/error.h"

using namespace sal;

TEST_CASE("annotations: the imagenet-val layout with boxes") {
  const Annotations a = parse_annotations(
      "file\tlabel\torig_width\torig_height\tboxes\n"
      "a.JPEG\t472\t500\t375\t20,175,111,292;372,189,499,224\r\n"
      "\n"
      "b.JPEG\t0\t10\t20\t\n",
      "t.tsv");
  CHECK(a.has_boxes);
  REQUIRE(a.rows.size() == 2);
  CHECK(a.rows[0].file == "a.JPEG");
  CHECK(a.rows[0].label == 472);
  CHECK(a.rows[0].orig_width == 500);
  CHECK(a.rows[0].orig_height == 375);
  REQUIRE(a.rows[0].boxes.size() == 2);
  CHECK(a.rows[0].boxes[1] == Box{372, 189, 499, 224});
  CHECK(a.rows[0].boxes[1].area() == 128 * 36);
  CHECK(a.rows[1].boxes.empty());
  CHECK(a.rows[1].line == 4);
}

TEST_CASE("annotations: the labels.tsv layout (columns in another order, extra columns ignored)") {
  const Annotations a = parse_annotations("file\twnid\tlabel\tname\nimages/x.jpg\tn014\t7\ttench\n", "l.tsv");
  CHECK_FALSE(a.has_boxes);
  REQUIRE(a.rows.size() == 1);
  CHECK(a.rows[0].file == "images/x.jpg");
  CHECK(a.rows[0].label == 7);
}

TEST_CASE("annotations: malformed tables are errors naming the source, line and column") {
  const std::string h = "file\tlabel\torig_width\torig_height\tboxes\n";
  const auto err = [](const std::string& text) {
    try {
      parse_annotations(text, "bad.tsv");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(err("") == "bad.tsv: empty table (no header line)");
  CHECK(err("name\tlabel\nx\t1\n").find("bad.tsv:1: the header must name the columns 'file' and 'label'") == 0);
  CHECK(err("file\tlabel\tboxes\nx\t1\t\n").find("only some of") != std::string::npos);
  CHECK(err("file\tlabel\tfile\n").find("twice") != std::string::npos);
  CHECK(err(h + "a\t1\t10\t10\t0,0,1,1\nb\tx\t10\t10\t\n") == "bad.tsv:3: column 'label': 'x' is not an integer >= 0");
  CHECK(err(h + "a\t-1\t10\t10\t\n").find("bad.tsv:2: column 'label'") == 0);
  CHECK(err(h + "a\t1\t0\t10\t\n").find("bad.tsv:2: column 'orig_width'") == 0);
  CHECK(err(h + "a\t1\t10\t1e3\t\n").find("bad.tsv:2: column 'orig_height'") == 0);
  CHECK(err(h + "a\t1\t10\t10\t0,0,1,1;0,0,10,1\n").find("bad.tsv:2: column 'boxes': box 2 '0,0,10,1' is not") == 0);
  CHECK(err(h + "a\t1\t10\t10\t5,0,3,1\n") == "bad.tsv:2: column 'boxes': box 1 '5,0,3,1' has x1 < x0");
  CHECK(err(h + "a\t1\t10\t10\t0,5,3,1\n") == "bad.tsv:2: column 'boxes': box 1 '0,5,3,1' has y1 < y0");
  CHECK(err(h + "a\t1\t10\t10\t0,0,1\n").find("box 1 '0,0,1' is not") != std::string::npos);
  CHECK(err(h + "a\t1\t10\t10\t0,0,1,1;\n").find("box 2 '' is not") != std::string::npos);
  CHECK(err(h + "a\t1\t10\t10\n") == "bad.tsv:2: 4 tab-separated fields, the header has 5");
  CHECK(err(h + "a\t1\t10\t10\t\na\t2\t10\t10\t\n") == "bad.tsv:3: file 'a' already listed on line 2");
  CHECK(err(h + "\t1\t10\t10\t\n") == "bad.tsv:2: column 'file' is empty");
  CHECK(err(h + "a\t99999999999999999999\t10\t10\t\n").find("column 'label'") != std::string::npos);
  CHECK(err(h + "a\t1\t10\t10\t0,0,1,1\x01\n").find("'0,0,1,1?'") != std::string::npos);
}

TEST_CASE("annotations: ../shared/data/imagenet-val/annotations.tsv parses") {
  const std::string path = std::string(SAL_SHARED_DIR) + "/data/imagenet-val/annotations.tsv";
  REQUIRE_MESSAGE(std::filesystem::exists(path), path, " is missing");
  const Annotations a = read_annotations(path);
  CHECK(a.has_boxes);
  CHECK(a.rows.size() == 1000);
  for (const AnnotationRow& r : a.rows) {
    CHECK(!r.boxes.empty());
    CHECK(r.label < 1000);
  }
}
