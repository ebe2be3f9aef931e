"""Tests of tools/summarize_graph_rows.py. Run from the repository root:

    /usr/bin/python3 -m unittest -v tools/test_summarize_graph_rows.py
"""

import io
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import summarize_graph_rows as sgr  # noqa: E402

INFER = "masker_infer_graph/resnet50_released/cuda/batch:64/manual_time"
TRAIN = "masker_train_graph/resnet50_released/cuda/batch:64/manual_time"

# Rows as scripts/gpu-next-run.sh prints them (masker_bench's tabular console rows behind the setting), with the
# other lines of a run.txt around them.
RUN_TXT = f"""== 2. masker inference graphs (400 s left)
backend=auto fuse=0 nhwc=0  {INFER}       10.0 ms         10.0 ms           70   6.81443k   0   6.4k/s   16
backend=cudnn fuse=0 nhwc=0  {INFER}      11.0 ms         11.0 ms           70   6.81443k   0   5.8k/s   16
backend=auto fuse=1 nhwc=0  {INFER}        8.0 ms          8.0 ms           70   3.9k       0   8.0k/s   16
backend=auto fuse=1 fold=0  {INFER}       12.5 ms         12.5 ms           55   3.9k       0   5.1k/s   16
-- Auto's choices under auto (pass, then choice: how many shapes), fusion off / on:
fuse=0 nhwc=0 fwd cudnn:3
backend=auto fuse=0 nhwc=0  {INFER}        9000 us         9000 us          70   6.81443k   0   6.4k/s   16
fuse=0 nhwc=0  {TRAIN}      50.0 ms      50.0 ms       13   34.8k   0   1.2k/s   28.0   16
fuse=1 nhwc=0  {TRAIN}      40.0 ms      40.0 ms       13   21.2k   0   1.6k/s   28.0   16
fuse=0 nhwc=1  {TRAIN} ERROR OCCURRED: 'cudnn: CUDNN_STATUS_NOT_SUPPORTED'
masker_infer_graph/mobilenet_v1/cuda/batch:1/manual_time   1.0 ms   1.0 ms   10  (an unprefixed row: not a setting's)
"""


class SummarizeGraphRowsTest(unittest.TestCase):
    def setUp(self):
        self.times, self.errors = sgr.parse(io.StringIO(RUN_TXT))

    def test_rows_are_grouped_by_benchmark_and_setting_in_ms(self):
        infer = INFER.rsplit("/", 1)[0]
        self.assertEqual(self.times[infer]["default"], [10.0, 9.0])  # 9000 us is 9 ms
        self.assertEqual(self.times[infer]["backend=cudnn"], [11.0])
        self.assertEqual(self.times[infer]["fuse=1"], [8.0])
        self.assertEqual(self.times[infer]["fuse=1 fold=0"], [12.5])
        self.assertNotIn("masker_infer_graph/mobilenet_v1/cuda/batch:1", self.times)

    def test_an_error_row_is_kept_apart(self):
        train = TRAIN.rsplit("/", 1)[0]
        self.assertIn("CUDNN_STATUS_NOT_SUPPORTED", self.errors[train]["nhwc=1"])
        self.assertNotIn("nhwc=1", self.times[train])

    def test_ratios_against_the_best_default_round(self):
        settings, rows, ratios = sgr.summarize(self.times, self.errors)
        self.assertEqual(settings[0], "default")
        r = dict(ratios["fuse=1"])
        self.assertAlmostEqual(r[INFER.rsplit("/", 1)[0]], 9.0 / 8.0)
        self.assertAlmostEqual(r[TRAIN.rsplit("/", 1)[0]], 50.0 / 40.0)
        cells = dict(rows)[INFER.rsplit("/", 1)[0]]
        best, n, spread, ratio = cells["default"]
        self.assertEqual((best, n), (9.0, 2))
        self.assertAlmostEqual(spread, 10.0 / 9.0 - 1)
        self.assertEqual(dict(rows)[TRAIN.rsplit("/", 1)[0]]["nhwc=1"], "error")

    def test_report_names_each_setting_with_its_lowest_ratio(self):
        out = io.StringIO()
        sgr.report(self.times, self.errors, out)
        text = out.getvalue()
        self.assertIn("| benchmark | default |", text)
        self.assertIn("fuse=1: faster than the default in 2 of 2 benchmarks", text)
        self.assertIn("fuse=1 fold=0: faster than the default in 0 of 1 benchmarks", text)
        self.assertIn("lowest 0.720", text)  # 9 / 12.5
        self.assertIn("nhwc=1: no benchmark measured under both it and the default", text)
        self.assertIn("error", text)

    def test_an_unknown_setting_key_is_an_error_not_a_new_column(self):
        with self.assertRaisesRegex(ValueError, "unknown setting key"):
            sgr.parse(io.StringIO(f"backend=auto fusion=1  {INFER}  1.0 ms  1.0 ms  5\n"))

    def test_a_file_with_no_rows_says_so(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("gpu-check (build + tests) exit 2 after 91 s\n")
        try:
            saved, sys.stdout = sys.stdout, io.StringIO()
            try:
                self.assertEqual(sgr.main([f.name]), 0)
                self.assertIn("no masker graph rows found", sys.stdout.getvalue())
            finally:
                sys.stdout = saved
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
