"""Both preparation paths against MXNet's reader, the input bytes and a float64 teacher."""
import os

import numpy as np
import pytest

from prepare_helpers import decode_rgb, read_raw, reference_embedding, run_script

BATCH = "8"


def class_runs(classes):
    """[first_key, last_key+1] of each run of equal class id (keys from 1), computed by hand."""
    runs, start = [], 1
    for i in range(1, len(classes) + 1):
        if i == len(classes) or classes[i] != classes[i - 1]:
            runs.append((start, i + 1))
            start = i + 1
    return runs


@pytest.fixture(scope="module")
def source(synthetic_dir):
    """The input dataset as MXNet reads it, plus its class ids."""
    raw = read_raw(str(synthetic_dir))
    raw["classes"] = [int(label[0]) for label in raw["labels"]]
    return raw


def streaming(data_dir, out, teacher, capsys, *extra):
    return run_script("save_embeddings", ["--model", teacher[0], "--data-dir", str(data_dir), "--out", str(out),
                                          "--batch-size", BATCH, *extra], capsys)


def stepwise(data_dir, work, out, teacher, capsys):
    """bin_get_images -> save_embeddings -> save_lst -> face2rec2; returns the summary lines."""
    lines = []
    for name, argv in [
        ("bin_get_images", ["--data-dir", str(data_dir), "--out", str(work)]),
        ("save_embeddings", ["--model", teacher[0], "--images", str(work / "images"),
                             "--labels", str(work / "labels"), "--batch-size", BATCH]),
        ("save_lst", ["--images", str(work / "images"), "--labels", str(work / "labels"),
                      "--out", str(out / "train.lst"), "--targets", str(data_dir)]),
        ("face2rec2", [str(out)]),
    ]:
        code, stdout, err = run_script(name, argv, capsys)
        assert code == 0, err
        lines.append(stdout.strip())
    return lines


@pytest.fixture(scope="module")
def built(synthetic_dir, teacher, tmp_path_factory):
    """Both outputs, built once for the module (tests below only read them)."""
    root = tmp_path_factory.mktemp("built")
    capsys = _NullCapture()
    code, out, err = streaming(synthetic_dir, root / "stream", teacher, capsys)
    assert code == 0, err
    stepwise(synthetic_dir, root / "work", root / "step", teacher, capsys)
    return root


class _NullCapture:
    def readouterr(self):
        return "", ""


def check_soft_dataset(folder, source, teacher):
    """The soft dataset in ``folder`` against the input and an independent teacher forward."""
    got = read_raw(str(folder))
    n = len(source["labels"])
    runs = class_runs(source["classes"])
    assert got["header"] == (n + 1, n + 1 + len(runs))
    assert got["num_keys"] == n + 1 + len(runs)
    assert got["identities"] == runs
    assert got["payloads"] == source["payloads"]  # image bytes unchanged, same key order
    labels = np.stack(got["labels"])
    assert labels.shape == (n, 8 + 1) and labels.dtype == np.float32
    assert labels[:, -1].astype(int).tolist() == source["classes"]
    rgb = np.stack([decode_rgb(p) for p in source["payloads"]])
    expected = reference_embedding(rgb, teacher[1], teacher[2])
    np.testing.assert_allclose(labels[:, :-1], expected, rtol=1e-4, atol=1e-4)
    assert got["property"] == source["property"]
    return labels


def test_streaming_matches_teacher_and_input(built, source, teacher, synthetic_dir):
    check_soft_dataset(built / "stream", source, teacher)
    bins = sorted(f for f in os.listdir(synthetic_dir) if f.endswith(".bin"))
    assert bins, "the fixture should carry verification targets"
    for name in bins:
        with open(synthetic_dir / name, "rb") as a, open(built / "stream" / name, "rb") as b:
            assert a.read() == b.read()
    assert not os.path.exists(str(built / "stream") + ".partial")


def test_stepwise_equals_streaming(built, source, teacher, synthetic_dir):
    step = check_soft_dataset(built / "step", source, teacher)
    stream = np.stack(read_raw(str(built / "stream"))["labels"])
    np.testing.assert_array_equal(step, stream)  # the .lst text round-trips float32 exactly
    assert sorted(f for f in os.listdir(built / "step") if f.endswith(".bin")) == \
        sorted(f for f in os.listdir(synthetic_dir) if f.endswith(".bin"))


def test_stepwise_intermediate_files(built, source, teacher):
    work = built / "work"
    index = [line.split("\t") for line in (work / "labels" / "index.tsv").read_text().splitlines()]
    assert [int(k) for k, _, _ in index] == list(range(1, len(source["labels"]) + 1))
    assert [int(c) for _, c, _ in index] == source["classes"]
    for (key, cls, rel), payload in zip(index, source["payloads"]):
        ext = ".png" if payload.startswith(b"\x89PNG") else ".jpg"
        assert rel == f"{cls}/{key}{ext}"
        assert (work / "images" / rel).read_bytes() == payload
    vectors = np.load(work / "labels" / "embeddings.npy")
    rgb = np.stack([decode_rgb(p) for p in source["payloads"]])
    np.testing.assert_allclose(vectors, reference_embedding(rgb, teacher[1], teacher[2]), rtol=1e-4, atol=1e-4)
    assert not [f for f in os.listdir(work / "labels") if f.endswith(".partial")]


def test_several_cpu_contexts_and_odd_batch(synthetic_dir, source, teacher, tmp_path, capsys):
    code, out, err = run_script("save_embeddings", ["--model", teacher[0], "--data-dir", str(synthetic_dir),
                                                    "--out", str(tmp_path / "o"), "--batch-size", "6",
                                                    "--cpu-contexts", "2"], capsys)
    assert code == 0, err
    assert out.startswith("save_embeddings: ") and len(out.strip().splitlines()) == 1
    check_soft_dataset(tmp_path / "o", source, teacher)


def test_overwrite_replaces(built, synthetic_dir, source, teacher, tmp_path, capsys):
    """--overwrite replaces a soft dataset this script wrote (it carries the marker)."""
    out = tmp_path / "o"
    code, _, err = streaming(synthetic_dir, out, teacher, capsys)
    assert code == 0, err
    (out / "stale.txt").write_text("old")
    code, _, err = streaming(synthetic_dir, out, teacher, capsys, "--overwrite")
    assert code == 0, err
    assert not (out / "stale.txt").exists()
    check_soft_dataset(out, source, teacher)
    assert not [p for p in os.listdir(tmp_path) if p != "o"]  # no .partial / .old left behind
