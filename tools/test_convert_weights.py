"""Tests of the Python conversion tools. Run from the repository root:

    /usr/bin/python3 -m unittest tools/test_convert_weights.py
    /usr/bin/python3 tools/test_convert_weights.py

Tests on the real pretrained files skip (with the path in the message) when
../shared/data is absent; set SHARED_DATA to point elsewhere.
"""

import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_weights as cw  # noqa: E402
import safetensors_io as st  # noqa: E402
from reference_models import CifarResNet, load_converted  # noqa: E402

REPO = os.path.dirname(HERE)
SHARED_DATA = os.environ.get("SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
CIFAR_DIR = os.path.join(SHARED_DATA, "cifar10-resnet")
MOBILENET_DIR = os.path.join(SHARED_DATA, "mobilenet_v1_0.75_224")


def need(path):
    if not os.path.exists(path):
        raise unittest.SkipTest(f"shared data not found: {os.path.abspath(path)} "
                                f"(needs ../shared/data beside the repository, or SHARED_DATA)")


class TempDirCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="convert_test_")
        self.addCleanup(shutil.rmtree, self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)


class SafetensorsIOTest(TempDirCase):
    def test_round_trip(self):
        rng = np.random.default_rng(0)
        tensors = {
            "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "d": rng.standard_normal((5,)),  # float64
            "i32": np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
            "i64": np.array([2 ** 40, -1], dtype=np.int64),
            "scalar": np.array(1.5, dtype=np.float32),
            "empty": np.zeros((0, 7), dtype=np.float32),
            "u8": np.arange(5, dtype=np.uint8),
            "bf": st.f32_to_bf16(np.array([1.0, -2.5, 3.140625], dtype=np.float32)),
            "big_endian": np.arange(3, dtype=">f4"),
            "strided": np.arange(12, dtype=np.float32).reshape(3, 4).T,
        }
        meta = {"arch": "test", "note": "ünïcode ok"}
        p = self.path("a.safetensors")
        st.write(p, tensors, meta)
        got, got_meta = st.read(p)
        self.assertEqual(got_meta, meta)
        self.assertEqual(list(got), list(tensors))  # file order = insertion order
        for k, v in tensors.items():
            if k == "bf":
                self.assertEqual(got[k].dtype, np.uint16)
                np.testing.assert_array_equal(st.bf16_to_f32(got[k]), [1.0, -2.5, 3.140625])
                continue
            self.assertEqual(got[k].shape, v.shape, k)
            np.testing.assert_array_equal(got[k], v, k)
        self.assertEqual(got["big_endian"].dtype, np.dtype("<f4"))
        _, header = st.read_header(p)
        self.assertEqual(header["bf"], ("BF16", (3,)))
        self.assertEqual(header["i64"], ("I64", (2,)))
        # Layout: u64 header length, multiple of 8, JSON starting with '{'.
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            head = f.read(n)
        self.assertEqual(n % 8, 0)
        self.assertTrue(head.startswith(b"{"))
        self.assertEqual(os.listdir(self.tmp), ["a.safetensors"])  # no temp file left behind

    def test_bf16_rounding(self):
        x = np.array([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -9, np.inf, np.nan], dtype=np.float32)
        back = st.bf16_to_f32(st.f32_to_bf16(x).bits)
        self.assertEqual(back[0], 1.0)              # tie -> even
        self.assertEqual(back[1], 1.0 + 2 ** -7)    # above half -> up
        self.assertEqual(back[2], np.inf)
        self.assertTrue(np.isnan(back[3]))

    def _corrupt(self, header, data=b""):
        raw = json.dumps(header).encode()
        raw += b" " * ((-len(raw)) % 8)
        p = self.path("bad.safetensors")
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw + data)
        return p

    def test_rejects_malformed_files(self):
        ok = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
        cases = {
            "gap": self._corrupt({"a": ok}, b"\0" * 12),
            "covers": self._corrupt({"a": ok, "b": dict(ok, data_offsets=[4, 12])}, b"\0" * 12),
            "bad dtype": self._corrupt({"a": dict(ok, dtype="F12")}, b"\0" * 8),
            "span": self._corrupt({"a": dict(ok, shape=[3])}, b"\0" * 8),
            "past end": self._corrupt({"a": ok}, b"\0" * 4),
            "bad metadata": self._corrupt({"__metadata__": {"k": 1}}),
        }
        for what, p in cases.items():
            with self.subTest(what), self.assertRaises(st.SafetensorsError) as cm:
                st.read(p)
            self.assertIn(p, str(cm.exception))
        p = self.path("short.safetensors")
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", 1000) + b"{}")
        with self.assertRaisesRegex(st.SafetensorsError, "exceeds the file"):
            st.read(p)

    def test_rejects_bad_inputs(self):
        with self.assertRaises(st.SafetensorsError):
            st.write(self.path("x"), {"a": np.zeros(2, np.complex64)})
        with self.assertRaises(st.SafetensorsError):
            st.write(self.path("x"), {"a": np.zeros(2, np.float32)}, {"k": 3})


class TorchvisionConverterTest(TempDirCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(1234)
        cls.sd = cw.build_torchvision_model("resnet50").state_dict()

    def test_resnet50_exact(self):
        tensors, meta = cw.convert_torchvision_state_dict("resnet50", self.sd)
        want = {k: v for k, v in self.sd.items() if not k.endswith("num_batches_tracked")}
        self.assertEqual(set(tensors), set(want))
        self.assertEqual(list(tensors), list(want))  # torchvision order
        for k, v in want.items():
            self.assertEqual(tensors[k].dtype, np.float32)
            np.testing.assert_array_equal(tensors[k], v.numpy(), k)
        self.assertEqual(meta["arch"], "resnet50")
        self.assertEqual(meta["bn_eps"], "1e-05")
        self.assertEqual(meta["input_range"], "0_1")
        self.assertEqual(meta["transform_input"], "0")
        self.assertEqual(len(json.loads(meta["class_names"])), 1000)

    def test_one_error_names_every_problem(self):
        sd = dict(self.sd)
        del sd["layer3.2.bn2.running_var"]
        sd["layer9.weight"] = torch.zeros(3)
        sd["layer1.0.conv2.weight"] = torch.zeros(64, 64, 5, 5)
        with self.assertRaises(cw.ConversionError) as cm:
            cw.convert_torchvision_state_dict("resnet50", sd)
        msg = str(cm.exception)
        self.assertIn("missing key 'layer3.2.bn2.running_var'", msg)
        self.assertIn("unexpected key 'layer9.weight'", msg)
        self.assertIn("'layer1.0.conv2.weight' has shape [64, 64, 5, 5], expected [64, 64, 3, 3]", msg)

    def test_cli_googlenet_forms(self):
        # weights=None googlenet has aux heads: the converter must drop them.
        torch.manual_seed(5)
        model = cw.build_torchvision_model("googlenet", aux_logits=True)
        self.assertTrue(any(k.startswith("aux1.") for k in model.state_dict()))
        classes = self.path("synset_words.txt")
        with open(classes, "w") as f:
            f.writelines(f"n{i:08d} class {i}, alias\n" for i in range(1000))
        forms = {"state_dict": model.state_dict(),
                 "wrapped": {"state_dict": model.state_dict(), "epoch": 3},
                 "module": model}
        for form, obj in forms.items():
            with self.subTest(form):
                src, out = self.path(f"{form}.pth"), self.path(f"{form}.safetensors")
                torch.save(obj, src)
                self.assertEqual(cw.main(["torchvision", "--arch", "googlenet", "--input", src,
                                          "--output", out, "--classes", classes]), 0)
                tensors, meta = st.read(out)
                self.assertFalse([k for k in tensors if k.startswith("aux")])
                np.testing.assert_array_equal(tensors["fc.weight"], model.fc.weight.detach().numpy())
                self.assertEqual(meta["transform_input"], "1")  # pretrained-GoogLeNet default
                self.assertEqual(meta["bn_eps"], "0.001")
                self.assertEqual(json.loads(meta["class_names"])[7], "class 7, alias")
                self.assertIn(f"{form}.pth sha256:", meta["source"])

    def test_cli_reports_error(self):
        src = self.path("bad.pth")
        torch.save({"fc.weight": torch.zeros(1000, 2048)}, src)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cw.main(["torchvision", "--arch", "resnet50", "--input", src,
                          "--output", self.path("o.safetensors")])
        self.assertEqual(rc, 1)
        self.assertIn("missing key 'conv1.weight'", err.getvalue())
        self.assertFalse(os.path.exists(self.path("o.safetensors")))


class CifarConverterTest(TempDirCase):
    def test_real_resnet20(self):
        src = os.path.join(CIFAR_DIR, "resnet20-12fca82f.th")
        need(src)
        out = self.path("r20.safetensors")
        self.assertEqual(cw.main(["cifar-resnet", "--depth", "20", "--input", src, "--output", out]), 0)
        tensors, meta = st.read(out)
        self.assertEqual(len(tensors), 97)
        self.assertFalse([k for k in tensors if k.startswith("module.")])
        self.assertEqual(tensors["layer2.0.conv1.weight"].shape, (32, 16, 3, 3))
        self.assertEqual(tensors["linear.weight"].shape, (10, 64))
        self.assertEqual(meta["arch"], "cifar_resnet20")
        self.assertEqual(meta["input_size"], "32")
        self.assertEqual(meta["mean"], "0.485,0.456,0.406")
        self.assertEqual(json.loads(meta["class_names"])[9], "truck")
        self.assertIn("sha256:12fca82f", meta["source"])
        # Bit-identical to the README's derived raw dump.
        derived = os.path.join(CIFAR_DIR, "derived")
        blob = np.fromfile(os.path.join(derived, "resnet20.f32.bin"), dtype="<f4")
        with open(os.path.join(derived, "resnet20.manifest.tsv")) as f:
            rows = [line.rstrip("\n").split("\t") for line in f][1:]
        for name, shape, offset, numel in rows:
            ref = blob[int(offset) // 4:int(offset) // 4 + int(numel)]
            np.testing.assert_array_equal(tensors[name].reshape(-1).view("<u4"), ref.view("<u4"), name)
        # And it loads strictly into the PyTorch reference architecture.
        load_converted(CifarResNet(20), tensors)

    def test_expected_shapes_match_reference_model(self):
        for depth, count in ((20, 97), (56, 277)):
            want = {k: tuple(v.shape) for k, v in CifarResNet(depth).state_dict().items()
                    if not k.endswith("num_batches_tracked")}
            got = cw.cifar_resnet_expected_shapes(depth)
            self.assertEqual(got, want)
            self.assertEqual(len(got), count)


class TfjsMobilenetTest(TempDirCase):
    def test_real_model(self):
        need(MOBILENET_DIR)
        out = self.path("mn.safetensors")
        self.assertEqual(cw.main(["tfjs-mobilenet", "--model-dir", MOBILENET_DIR, "--output", out]), 0)
        tensors, meta = st.read(out)
        self.assertEqual(len(tensors), 137)
        self.assertEqual(sum(v.size for v in tensors.values()), 2601976)
        shapes = {"conv1.weight": (24, 3, 3, 3), "conv_dw_1.weight": (24, 1, 3, 3),
                  "conv_pw_1.weight": (48, 24, 1, 1), "conv_dw_13.weight": (768, 1, 3, 3),
                  "conv_pw_13_bn.running_var": (768,), "conv_preds.weight": (1000, 768, 1, 1),
                  "conv_preds.bias": (1000,)}
        for k, s in shapes.items():
            self.assertEqual(tensors[k].shape, s, k)
        # Layout: conv1.weight[k, c, r, s] == HWIO kernel[r, s, c, k] read straight from its shard.
        raw = np.fromfile(os.path.join(MOBILENET_DIR, "group1-shard1of1"), dtype="<f4").reshape(3, 3, 3, 24)
        np.testing.assert_array_equal(tensors["conv1.weight"], raw.transpose(3, 2, 0, 1))
        self.assertEqual(tensors["conv1.weight"][5, 2, 0, 1], raw[0, 1, 2, 5])
        raw = np.fromfile(os.path.join(MOBILENET_DIR, "group3-shard1of1"), dtype="<f4").reshape(3, 3, 24, 1)
        self.assertEqual(tensors["conv_dw_1.weight"][7, 0, 2, 1], raw[2, 1, 7, 0])
        self.assertEqual(meta["input_range"], "minus1_1")
        self.assertEqual(meta["bn_eps"], "0.001")
        self.assertEqual(len(json.loads(meta["class_names"])), 1000)

    def test_truncated_shard_is_named(self):
        need(MOBILENET_DIR)
        copy = self.path("mn")
        shutil.copytree(MOBILENET_DIR, copy)
        shard = os.path.join(copy, "group37-shard1of1")
        with open(shard, "r+b") as f:
            f.truncate(os.path.getsize(shard) - 4)
        os.remove(os.path.join(copy, "group2-shard1of1"))
        with self.assertRaises(cw.ConversionError) as cm:
            cw.convert_tfjs_mobilenet(copy)
        msg = str(cm.exception)
        self.assertIn("'group37-shard1of1' (2359292 bytes) should hold 2359296 bytes", msg)
        self.assertIn("shard 'group2-shard1of1' is missing", msg)


class GoldenFixturesTest(TempDirCase):
    def test_cifar_fixture(self):
        subprocess.run([sys.executable, os.path.join(HERE, "make_golden_fixtures.py"), "--out", self.tmp,
                        "--seed", "3", "--only", "cifar_resnet20"], check=True, capture_output=True)
        golden, meta = st.read(self.path("cifar_resnet20.golden.safetensors"))
        shapes = {k: v.shape for k, v in golden.items()}
        self.assertEqual(shapes, {"input": (2, 3, 32, 32), "logits": (2, 10), "feat1": (2, 16, 32, 32),
                                  "feat2": (2, 32, 16, 16), "feat4": (2, 64, 8, 8),
                                  "input_grad": (2, 3, 32, 32)})
        self.assertEqual(json.loads(meta["feature_modules"])["feat4"], "layer3")
        weights, wmeta = st.read(self.path("cifar_resnet20.weights.safetensors"))
        self.assertEqual(wmeta["arch"], "cifar_resnet20")
        model = load_converted(CifarResNet(20), weights)
        x = torch.from_numpy(golden["input"].copy()).requires_grad_(True)
        logits = model(x)
        torch.testing.assert_close(logits.detach().numpy(), golden["logits"])
        logits[[0, 1], [0, 7]].sum().backward()
        torch.testing.assert_close(x.grad.numpy(), golden["input_grad"])


if __name__ == "__main__":
    unittest.main()
