#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/), stdlib only.

    python3 tests/fuzz/make_corpus.py --image-seeds build-san/make_image_seeds --train-out runs/seed

--image-seeds: the make_image_seeds program of the SAL_FUZZ build (tests/fuzz/make_image_seeds.cpp);
--train-out:   a sal_train output folder (its checkpoint.safetensors and masker.safetensors become the
               checkpoint and masker seeds; docs/reliability.md has the command that made them).
Each seed is a small valid input of one reader, with the variants of the format that the reader handles
(tar: ustar, GNU long names, pax; safetensors: every engine dtype, other dtypes, empty and 0-d tensors,
unaligned data, metadata); libFuzzer mutates them from there.
"""

import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_bytes(entries, fmt=tarfile.USTAR_FORMAT):
    """entries: (name, bytes) for files, (name, None) for a directory, (name, '->target') for a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif isinstance(data, str):
                info.type = tarfile.SYMTYPE
                info.linkname = data[2:]
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    # Cut tarfile's padding to a 10240-byte record down to the two zero blocks that end an archive.
    data = buf.getvalue().rstrip(b"\0")
    return data + b"\0" * (-len(data) % 512 + 1024)


def safetensors(tensors, metadata=None, pad=True):
    """tensors: (name, dtype, shape, raw bytes)."""
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-seeds", required=True)
    ap.add_argument("--train-out", required=True)
    a = ap.parse_args()
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)

    img_dir = os.path.join(CORPUS, "fuzz_image")
    os.makedirs(img_dir)
    subprocess.run([a.image_seeds, img_dir], check=True)
    images = {n: open(os.path.join(img_dir, n), "rb").read() for n in sorted(os.listdir(img_dir))}

    # Tar archives: the three header formats, directories, a symlink, an empty file, a long name.
    long_name = "class_with_a_long_name/" + "x" * 120 + ".png"
    out("fuzz_tar", "ustar.tar", tar_bytes([("a/1.png", images["gray8.png"]), ("a/2.cls", b"7")]))
    out("fuzz_tar", "gnu_longname.tar",
        tar_bytes([("d", None), (long_name, b"abc"), ("l", "->d"), ("empty", b"")], tarfile.GNU_FORMAT))
    out("fuzz_tar", "pax.tar", tar_bytes([(long_name, b"0123456789"), ("b.txt", b"x" * 600)], tarfile.PAX_FORMAT))

    # Shards: KEY.<image> + KEY.cls pairs (JPEG and PNG), and one with a corrupt image and an extra file.
    out("fuzz_shard", "shard.tar", tar_bytes([
        ("000000000_a.jpg", images["rgb444.jpg"]), ("000000000_a.cls", b"3"),
        ("000000001_b.png", images["rgb8.png"]), ("000000001_b.cls", b"0"),
        ("000000002_c.png", images["palette4.png"]), ("000000002_c.cls", b"9")]))
    out("fuzz_shard", "shard_gray_corrupt.tar", tar_bytes([
        ("k1.jpg", images["gray.jpg"]), ("k1.cls", b"1"), ("k1.json", b"{}"),
        ("k2.png", images["gray1.png"][:40]), ("k2.cls", b"2"),
        ("k3.jpeg", images["cmyk.jpg"]), ("k3.cls", b"4")], tarfile.GNU_FORMAT))

    # safetensors: every dtype the engine reads and some it does not, empty and 0-d tensors, metadata,
    # an unpadded header (unaligned data: the copying path).
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)
    out("fuzz_safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 3], f32)], {"k": "v"}))
    out("fuzz_safetensors", "mixed.safetensors", safetensors([
        ("d", "F64", [2], struct.pack("<2d", 1.5, -3)), ("i", "I32", [3], struct.pack("<3i", 1, -1, 9)),
        ("h", "F16", [2], struct.pack("<2H", 0x3c00, 0x7c00)), ("b", "BF16", [2], struct.pack("<2H", 0x3f80, 0x0001)),
        ("u", "U8", [4], b"\x01\x02\x03\x04"), ("e", "F32", [0, 3], b""), ("s", "F32", [], struct.pack("<f", 2))]))
    out("fuzz_safetensors", "unaligned.safetensors",
        safetensors([("x", "F32", [3], f32[:12]), ("y", "F64", [1], struct.pack("<d", 2))], pad=False))

    # Checkpoint and masker: the real files of a short sal_train run.
    out("fuzz_checkpoint", "checkpoint.safetensors", open(os.path.join(a.train_out, "checkpoint.safetensors"), "rb").read())
    out("fuzz_masker", "masker.safetensors", open(os.path.join(a.train_out, "masker.safetensors"), "rb").read())

    # Weight metadata alone (scripts/sanitize.sh adds the shipped weights/cifar_resnet20.safetensors).
    meta = {"arch": "cifar_resnet20", "input_size": "32", "num_classes": "2", "class_names": '["a", "b"]',
            "input_range": "0_1", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25", "bn_eps": "1e-05",
            "transform_input": "0"}
    out("fuzz_weights", "metadata_0_1.safetensors", safetensors([], meta))
    meta.update({"arch": "mobilenet_v1_0.75", "input_range": "minus1_1"})
    out("fuzz_weights", "metadata_minus1_1.safetensors", safetensors([("x", "F32", [1], struct.pack("<f", 1))], meta))

    # Label tables: a class index and label lists (extra columns, CRLF, blank lines).
    out("fuzz_labels", "classes.tsv", b"# folder\tindex\ncat\t3\ndog\t0\n\nbird\t12\n")
    out("fuzz_labels", "list.tsv", b"file\tlabel\tsynset\nimg1.jpg\t5\tn01\nimg2.png\t0\tn02\n")
    out("fuzz_labels", "list_crlf.tsv", b"label\tfile\r\n7\ta/b.jpg\r\n\r\n999\tc.jpeg\r\n")

    # Annotation tables of the evaluation tools (engine/annotations.h): imagenet-val style with boxes
    # (several, none), imagenet-sample style without sizes, columns in another order, CRLF.
    out("fuzz_annotations", "annotations.tsv",
        b"file\tlabel\torig_width\torig_height\tboxes\n"
        b"a.JPEG\t472\t500\t375\t20,175,111,292;372,189,499,224\n"
        b"b.JPEG\t0\t333\t500\t\n")
    out("fuzz_annotations", "labels.tsv", b"file\twnid\tlabel\tname\nimages/n01.jpg\tn01\t0\ttench\n")
    out("fuzz_annotations", "reordered_crlf.tsv",
        b"boxes\torig_height\tlabel\tfile\torig_width\r\n0,0,9,9\t10\t3\tc.png\t10\r\n\r\n")


if __name__ == "__main__":
    main()
