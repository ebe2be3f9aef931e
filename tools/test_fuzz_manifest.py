"""Mutation fuzz test of the TensorFlow.js manifest reader (tools/convert_weights.py tfjs-mobilenet).

The TF.js model.json is the only outside input read by Python rather than C++, so there is no libFuzzer
target for it (docs/reliability.md); this test mutates the real manifest of
../shared/data/mobilenet_v1_0.75_224/model.json instead, with a fixed seed, and requires that every
mutant either converts or raises the converter's own ConversionError: never another exception (a raw
KeyError, TypeError, ValueError, JSONDecodeError, ... traceback).

Mutations: byte edits of the JSON text (flip, insert, delete, truncate), and structural edits of the parsed
JSON (a value replaced by one of another type or an extreme number, a key deleted, a list element
dropped or repeated, a shape extent changed). The weight shards and metadata.json are the real ones
(symlinked), so a mutant that stays well formed runs the whole conversion.

    /usr/bin/python3 -m unittest -v tools/test_fuzz_manifest.py
    SAL_FUZZ_MANIFEST_N=5000 /usr/bin/python3 -m unittest tools/test_fuzz_manifest.py    # a longer run
"""

import copy
import json
import os
import random
import shutil
import sys
import tempfile
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_weights as cw  # noqa: E402

REPO = os.path.dirname(HERE)
SHARED_DATA = os.environ.get("SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
MOBILENET_DIR = os.path.join(SHARED_DATA, "mobilenet_v1_0.75_224")

ODD_VALUES = [None, True, 0, -1, 1, 3, 2**63, -2**63, 1e308, float("nan"), 0.5, "", "x", "float32",
              "int8", [], [1], [2, 2], [-1, 3], [1, 2, 3, 4, 5], {}, {"name": "x"}]


def nodes(value, path=()):
    """Every (path, value) in the JSON tree."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nodes(v, path + (i,))


def structural_mutant(doc, rng):
    doc = copy.deepcopy(doc)
    all_nodes = list(nodes(doc))
    for _ in range(rng.randint(1, 3)):
        path, value = rng.choice(all_nodes[1:])
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        kind = rng.random()
        try:
            if kind < 0.45:
                parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
            elif kind < 0.65:
                del parent[key]
            elif kind < 0.8 and isinstance(value, list) and value:
                value.append(copy.deepcopy(rng.choice(value)))
            elif isinstance(value, int) and not isinstance(value, bool):
                parent[key] = rng.choice([value + 1, value - 1, value * 2, 0, -value])
            else:
                parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        except (KeyError, IndexError, TypeError):
            pass  # the path went stale after an earlier edit of this mutant
        all_nodes = list(nodes(doc))
        if len(all_nodes) < 2:
            break
    return json.dumps(doc).encode()


def byte_mutant(text, rng):
    b = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        i = rng.randrange(len(b)) if b else 0
        if kind < 0.4 and b:
            b[i] = rng.randrange(256)
        elif kind < 0.6:
            b[i:i] = bytes(rng.choice(b'{}[]",:0-9e.') for _ in range(rng.randint(1, 3)))
        elif kind < 0.8 and b:
            del b[i:i + rng.randint(1, 16)]
        else:
            del b[i:]
    return bytes(b)


class FuzzTfjsManifest(unittest.TestCase):
    def test_mutants_convert_or_raise_conversion_error(self):
        model_json = os.path.join(MOBILENET_DIR, "model.json")
        if not os.path.exists(model_json):
            self.skipTest(f"shared data not found: {os.path.abspath(model_json)}")
        n = int(os.environ.get("SAL_FUZZ_MANIFEST_N", "200"))
        seed = int(os.environ.get("SAL_FUZZ_MANIFEST_SEED", "1"))
        with open(model_json, "rb") as f:
            text = f.read()
        doc = json.loads(text)
        rng = random.Random(seed)
        tmp = tempfile.mkdtemp(prefix="fuzz_manifest_")
        outcomes = {"converted": 0, "ConversionError": 0}
        failures = []
        try:
            for name in os.listdir(MOBILENET_DIR):
                if name != "model.json":
                    os.symlink(os.path.join(os.path.abspath(MOBILENET_DIR), name), os.path.join(tmp, name))
            for i in range(n):
                mutant = structural_mutant(doc, rng) if rng.random() < 0.7 else byte_mutant(text, rng)
                with open(os.path.join(tmp, "model.json"), "wb") as f:
                    f.write(mutant)
                try:
                    cw.convert_tfjs_mobilenet(tmp)
                    outcomes["converted"] += 1
                except cw.ConversionError as e:
                    self.assertTrue(str(e), "a ConversionError must say what is wrong")
                    outcomes["ConversionError"] += 1
                except Exception:  # noqa: BLE001 - anything else is the finding this test looks for
                    failures.append(f"mutant {i} (seed {seed}):\n{traceback.format_exc()}")
                    keep = os.path.join(tempfile.gettempdir(), f"fuzz_manifest_failure_{seed}_{i}.json")
                    with open(keep, "wb") as f:
                        f.write(mutant)
        finally:
            shutil.rmtree(tmp)
        print(f"fuzz_manifest: {n} mutants (seed {seed}): {outcomes['converted']} converted, "
              f"{outcomes['ConversionError']} ConversionError, {len(failures)} other exceptions")
        if failures:
            self.fail(f"{len(failures)} mutants raised something other than ConversionError "
                      f"(the mutants are kept in {tempfile.gettempdir()}/fuzz_manifest_failure_*):\n"
                      + "\n".join(failures[:5]))


if __name__ == "__main__":
    unittest.main()
