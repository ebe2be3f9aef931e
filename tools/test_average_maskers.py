"""Tests of tools/average_maskers.py. Run from the repository root:

    /usr/bin/python3 -m unittest -v tools/test_average_maskers.py
"""

import contextlib
import io
import os
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import average_maskers as am  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(HERE)
SHIPPED = os.path.join(REPO, "weights", "cifar_resnet20_masker.safetensors")


def masker_like(path, values, meta=None):
    """A small masker-shaped file: two tensors, masker metadata."""
    tensors = {"masker.head.weight": np.array(values[0], dtype=np.float32).reshape(2, 2),
               "masker.head.bias": np.array(values[1], dtype=np.float32)}
    st.write(path, tensors, meta or {"format": "sal-masker", "widths": "64", "training": "step 100\nlr=0.001"})


class AverageMaskersTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_tool(self, *args):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = am.main(list(args))
        return rc, err.getvalue()

    def test_mean_by_hand(self):
        masker_like(self.path("a"), [[1, 2, 3, 4], [0.5, -1]])
        masker_like(self.path("b"), [[3, 2, 1, 0], [1.5, 1]])
        masker_like(self.path("c"), [[2, 5, 2, 2], [1, 3]])
        rc, err = self.run_tool("--out", self.path("avg"), self.path("a"), self.path("b"), self.path("c"))
        self.assertEqual(rc, 0, err)
        t, meta = st.read(self.path("avg"))
        self.assertEqual(list(t), ["masker.head.weight", "masker.head.bias"])  # the inputs' order
        np.testing.assert_array_equal(t["masker.head.weight"], np.array([[2, 3], [2, 2]], dtype=np.float32))
        np.testing.assert_array_equal(t["masker.head.bias"], np.array([1, 1], dtype=np.float32))
        self.assertEqual(meta["widths"], "64")
        first, rest = meta["training"].split("\n", 1)
        self.assertTrue(first.startswith("average of 3 maskers: "), first)
        self.assertIn(self.path("b") + " (sha256 " + am.sha256_file(self.path("b")) + ")", first)
        self.assertEqual(rest, "step 100\nlr=0.001")

    def test_the_shipped_masker_with_itself_is_itself(self):
        rc, err = self.run_tool("--out", self.path("same"), SHIPPED, SHIPPED)
        self.assertEqual(rc, 0, err)
        a, ma = st.read(SHIPPED)
        b, mb = st.read(self.path("same"))
        self.assertEqual(list(a), list(b))
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        self.assertEqual({k: v for k, v in ma.items() if k != "training"},
                         {k: v for k, v in mb.items() if k != "training"})
        self.assertTrue(mb["training"].endswith(ma["training"]))

    def test_refusals_name_the_file_and_the_problem(self):
        masker_like(self.path("a"), [[1, 2, 3, 4], [0, 0]])
        masker_like(self.path("w"), [[1, 2, 3, 4], [0, 0]],
                    {"format": "sal-masker", "widths": "32", "training": "step 1"})
        rc, err = self.run_tool("--out", self.path("o"), self.path("a"), self.path("w"))
        self.assertEqual(rc, 1)
        self.assertIn(self.path("w"), err)
        self.assertIn("'widths'", err)
        st.write(self.path("x"), {"masker.head.weight": np.zeros((2, 2), np.float32)},
                 {"format": "sal-masker", "widths": "64", "training": "step 1"})
        rc, err = self.run_tool("--out", self.path("o"), self.path("a"), self.path("x"))
        self.assertEqual(rc, 1)
        self.assertIn("masker.head.bias", err)
        st.write(self.path("s"), {"masker.head.weight": np.zeros((4,), np.float32),
                                  "masker.head.bias": np.zeros((2,), np.float32)},
                 {"format": "sal-masker", "widths": "64", "training": "step 1"})
        rc, err = self.run_tool("--out", self.path("o"), self.path("a"), self.path("s"))
        self.assertEqual(rc, 1)
        self.assertIn("[4]", err)
        rc, err = self.run_tool("--out", self.path("o"), self.path("a"))
        self.assertEqual(rc, 1)
        self.assertIn("at least two", err)
        with open(self.path("bad"), "wb") as f:
            f.write(b"\x01\x00")
        rc, err = self.run_tool("--out", self.path("o"), self.path("a"), self.path("bad"))
        self.assertEqual(rc, 1)
        self.assertIn(self.path("bad"), err)
        self.assertFalse(os.path.exists(self.path("o")))


if __name__ == "__main__":
    unittest.main()
