"""Tests of tools/summarize_conv_layout.py. Run from the repository root:

    /usr/bin/python3 -m unittest -v tools/test_summarize_conv_layout.py
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import summarize_conv_layout as scl  # noqa: E402


def row(layer, pass_, layout, us, count, with_t=None, error=False):
    b = {"name": f"conv_layout/{layer}/{pass_}/{layout}/manual_time", "real_time": us, "time_unit": "us",
         "count": count}
    if with_t is not None:
        b["with_transposes/nchw"] = with_t
    if error:
        b = {"name": b["name"], "error_occurred": True, "error_message": "no algorithm"}
    return b


def doc():
    # Two shapes: l1 (3 of them in the network) gains from NHWC even with conversions, l2 (1) only without.
    b = []
    for p in scl.PASSES:
        b += [row("l1_a", p, "nchw", 100, 3), row("l1_a", p, "nhwc", 50, 3, with_t=0.8),
              row("l2_b", p, "nchw", 10, 1), row("l2_b", p, "nhwc", 8, 1, with_t=1.5)]
    b.append(row("dec_x", "fwd", "nchw", 1000, 1))  # not a ResNet-50 layer: ignored by the default pattern
    b.append({"name": "conv/l1_a/fwd/cudnn/manual_time", "real_time": 5, "time_unit": "us"})  # another row kind
    return {"benchmarks": b}


class SummarizeTest(unittest.TestCase):
    def test_sums_weight_each_shape_by_its_count(self):
        s = scl.summarize(scl.rows(doc()), r"^(conv1|l[1-4])_")
        for p in scl.PASSES:
            self.assertAlmostEqual(s[p]["nchw"], (3 * 100 + 10) * 1e-6)
            self.assertAlmostEqual(s[p]["nhwc"], (3 * 50 + 8) * 1e-6)
            self.assertAlmostEqual(s[p]["nhwc_convert"], (3 * 80 + 15) * 1e-6)
            self.assertAlmostEqual(s[p]["best"], (3 * 80 + 10) * 1e-6)  # l1 converted, l2 left in NCHW
            self.assertEqual(s[p]["shapes"], 2)
            self.assertEqual(s[p]["missing"], [])
        self.assertAlmostEqual(s["all"]["nchw"], 3 * 310e-6)
        self.assertEqual(s["all"]["shapes"], 6)

    def test_a_failed_or_absent_row_leaves_the_shape_out_and_is_named(self):
        d = doc()
        d["benchmarks"] = [b for b in d["benchmarks"] if b["name"] != "conv_layout/l2_b/dgrad/nhwc/manual_time"]
        d["benchmarks"].append(row("l2_b", "dgrad", "nhwc", 0, 1, error=True))
        s = scl.summarize(scl.rows(d), r"^(conv1|l[1-4])_")
        self.assertAlmostEqual(s["dgrad"]["nchw"], 300e-6)
        self.assertEqual(s["dgrad"]["missing"], ["l2_b"])
        self.assertEqual(s["fwd"]["missing"], [])
        self.assertIn("l2_b (dgrad)", s["all"]["missing"])
        self.assertIn("left out", scl.report(s))

    def test_time_units(self):
        r = scl.rows({"benchmarks": [dict(row("l1_a", "fwd", "nchw", 2, 1), real_time=2, time_unit="ms")]})
        self.assertAlmostEqual(r[("l1_a", "fwd", "nchw")]["s"], 2e-3)

    def test_cli_report_and_errors(self):
        with tempfile.TemporaryDirectory() as t:
            path = os.path.join(t, "layout.json")
            with open(path, "w") as f:
                json.dump(doc(), f)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(scl.main([path]), 0)
            lines = out.getvalue().splitlines()
            self.assertTrue(lines[0].startswith("pass"))
            all_row = [x for x in lines if x.startswith("all")][0].split()
            self.assertEqual(all_row[1], "6")
            self.assertAlmostEqual(float(all_row[2]), 0.93)  # 3 x 310 us
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                self.assertEqual(scl.main([path, "--layers", "^nothing"]), 1)
                self.assertEqual(scl.main([os.path.join(t, "absent.json")]), 1)
            self.assertIn("no conv_layout rows", err.getvalue())
            self.assertIn("absent.json", err.getvalue())

    def test_a_file_cut_short_keeps_its_complete_rows(self):
        text = json.dumps({"context": {"host_name": "x"}, "benchmarks": doc()["benchmarks"]}, indent=2)
        whole, complete = scl.parse(text)
        self.assertTrue(complete)
        # cut inside the last row (as a benchmark stopped by its timeout leaves it)
        cut = text[:text.rfind('"real_time"')]
        part, complete = scl.parse(cut)
        self.assertFalse(complete)
        self.assertEqual(part["benchmarks"], whole["benchmarks"][:-1])
        with self.assertRaises(ValueError):
            scl.parse('{"context": {"host_name": "x"')  # nothing to recover
        with tempfile.TemporaryDirectory() as t:
            path = os.path.join(t, "cut.json")
            with open(path, "w") as f:
                f.write(cut)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(scl.main([path]), 0)
            self.assertIn("cut short", out.getvalue())


if __name__ == "__main__":
    unittest.main()
