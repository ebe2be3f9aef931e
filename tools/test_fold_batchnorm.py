"""Tests of tools/fold_batchnorm.py and tools/compare_masks.py. Run from the repository root:

    /usr/bin/python3 -m unittest -v tools/test_fold_batchnorm.py
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_masks  # noqa: E402
import fold_batchnorm as fb  # noqa: E402
import safetensors_io as st  # noqa: E402


def bn(rng, k, prefix):
    return {prefix + ".weight": rng.uniform(-2, 2, k).astype(np.float32),
            prefix + ".bias": rng.uniform(-1, 1, k).astype(np.float32),
            prefix + ".running_mean": rng.uniform(-3, 3, k).astype(np.float32),
            prefix + ".running_var": rng.uniform(0.01, 2, k).astype(np.float32)}


def batch_norm(y, t, p, eps):
    """The engine's inference batch norm on y [K, n]: (y - mean) * s + beta, s rounded once to f32."""
    s = (t[p + ".weight"].astype(np.float64) / np.sqrt(t[p + ".running_var"].astype(np.float64) + eps))
    s = s.astype(np.float32).astype(np.float64)
    return (y - t[p + ".running_mean"][:, None]) * s[:, None] + t[p + ".bias"][:, None]


def want_bias(t, p, eps):
    s = (t[p + ".weight"].astype(np.float64) / np.sqrt(t[p + ".running_var"].astype(np.float64) + eps))
    s = s.astype(np.float32).astype(np.float64)
    return (t[p + ".bias"].astype(np.float64) - t[p + ".running_mean"].astype(np.float64) * s).astype(np.float32)


class FoldTest(unittest.TestCase):
    def test_pairs_each_naming_scheme(self):
        rng = np.random.default_rng(0)
        t = {"conv1.weight": np.ones((4, 3, 3, 3), np.float32), **bn(rng, 4, "bn1"),
             "layer1.0.conv2.weight": np.ones((4, 4, 3, 3), np.float32), **bn(rng, 4, "layer1.0.bn2"),
             "masker.up0.conv.weight": np.ones((8, 4, 3, 3), np.float32), **bn(rng, 8, "masker.up0.bn"),
             "block.downsample.0.weight": np.ones((6, 4, 1, 1), np.float32), **bn(rng, 6, "block.downsample.1")}
        self.assertEqual(sorted(fb.fold(t, 1e-5)), ["block.downsample.1", "bn1", "layer1.0.bn2", "masker.up0.bn"])

    def test_batch_norm_without_convolution_is_an_error(self):
        rng = np.random.default_rng(1)
        t = {"up.tconv.weight": np.ones((4, 4, 4, 4), np.float32), **bn(rng, 4, "up.bn")}
        with self.assertRaisesRegex(fb.FoldError, "x.safetensors: batch norm up.bn follows no convolution"):
            fb.fold(t, 1e-5, "x.safetensors")
        t = {"conv1.weight": np.ones((5, 3, 1, 1), np.float32), **bn(rng, 4, "bn1")}
        with self.assertRaisesRegex(fb.FoldError, "conv1.weight has 5 output channels, batch norm bn1 4"):
            fb.fold(t, 1e-5)

    def test_folded_convolution_equals_convolution_then_batch_norm(self):
        # A 1x1 convolution is a matrix product: bn(W x) against W' x + bias', and the batch norm left behind is
        # the identity to the last bit (the engine's scale of it is exactly 1.0f).
        rng = np.random.default_rng(2)
        for eps in (1e-5, 1e-3):
            t = {"conv.weight": rng.uniform(-1, 1, (7, 5, 1, 1)).astype(np.float32), **bn(rng, 7, "bn")}
            x = rng.uniform(-1, 1, (5, 11))
            want = batch_norm(t["conv.weight"][:, :, 0, 0].astype(np.float64) @ x, t, "bn", eps)
            f = dict(t)
            fb.fold(f, eps)
            got = batch_norm(f["conv.weight"][:, :, 0, 0].astype(np.float64) @ x, f, "bn", eps)
            self.assertLess(np.abs(got - want).max() / (1 + np.abs(want).max()), 1e-6)
            s = np.float32(np.float64(f["bn.weight"][0]) / np.sqrt(np.float64(f["bn.running_var"][0]) + eps))
            self.assertEqual(s, np.float32(1.0))
            self.assertTrue(np.all(f["bn.running_mean"] == 0))
            np.testing.assert_array_equal(f["bn.bias"], want_bias(t, "bn", eps))

    def test_the_tool_keeps_metadata_and_order(self):
        rng = np.random.default_rng(3)
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "in.safetensors"), os.path.join(d, "out.safetensors")
            t = {"conv1.weight": rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32), **bn(rng, 4, "bn1"),
                 "fc.weight": rng.uniform(-1, 1, (2, 4)).astype(np.float32)}
            st.write(src, t, {"arch": "test"})
            with contextlib.redirect_stdout(io.StringIO()) as out:
                self.assertEqual(fb.main(["--eps", "1e-5", src, dst]), 0)
            self.assertIn("1 batch norms folded", out.getvalue())
            got, meta = st.read(dst)
            self.assertEqual(list(got), list(t))
            self.assertEqual(meta, {"arch": "test"})
            np.testing.assert_array_equal(got["fc.weight"], t["fc.weight"])
            with contextlib.redirect_stderr(io.StringIO()) as err:
                self.assertEqual(fb.main(["--eps", "1e-5", os.path.join(d, "missing.safetensors"), dst]), 1)
            self.assertIn("missing.safetensors", err.getvalue())


class CompareMasksTest(unittest.TestCase):
    def folder(self, root, name, masks, top1, prob):
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "masks.jsonl"), "w") as f:
            for i, m in enumerate(masks):
                np.save(os.path.join(d, f"img{i}_mask.npy"), np.array(m, np.float32))
                f.write(json.dumps({"image": f"img{i}.jpg", "top1": top1[i], "prob": prob[i]}) + "\n")
        return d

    def test_figures_and_missing_twins(self):
        with tempfile.TemporaryDirectory() as root:
            a = self.folder(root, "a", [[[0.2, 0.6]], [[1.0, 0.0]]], [3, 4], [0.5, 0.9])
            b = self.folder(root, "b", [[[0.2, 0.4]], [[1.0, 0.0]]], [3, 5], [0.5, 0.8])
            line = compare_masks.compare(a, b)
            self.assertIn("2 masks, max |diff| 0.2, mean 0.05", line)
            self.assertIn("pixels across 0.5 1 of 4 (25.0000%)", line)
            self.assertIn("top-1 changed 1 of 2, max |prob diff| 0.1", line)
            os.remove(os.path.join(b, "img1_mask.npy"))
            with contextlib.redirect_stderr(io.StringIO()) as err:
                self.assertEqual(compare_masks.main([a, b]), 1)
            self.assertIn("img1_mask.npy: missing", err.getvalue())


if __name__ == "__main__":
    unittest.main()
