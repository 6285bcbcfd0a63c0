"""recognition/search.py on the tiny synthetic set: the halves, a resumed 2-epoch search, its outputs, the
trained genotype, and the one-line errors."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from facekd.data import labels
from facekd.data.iterators import keys_by_class
from facekd.data.recordio import RecordDataset
from facekd.errors import FaceKDError
from facekd.search.args import parse_args, resolve
from facekd.search.data import half_iterators, split_halves
from facekd.search.searcher import Search, main
from facekd.symbols import genotypes
from facekd.training.trainer import main as train_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--layers", "3", "--init-channels", "4", "--image-size", "56", "--batch-size", "8", "--order", "first",
        "--frequent", "2", "--no-progress", "--seed", "3", "--decode-threads", "1"]


def test_halves_split_every_identity(synthetic_dir):
    with RecordDataset(synthetic_dir) as ds:
        first, second = split_halves(ds, seed=0)
        assert not set(first) & set(second)
        assert sorted(np.concatenate([first, second])) == list(range(1, ds.num_images + 1))
        for keys in keys_by_class(ds)[1]:
            n, a = len(keys), len(set(keys) & set(first))
            assert a == (n + 1) // 2 and len(set(keys) & set(second)) == n // 2
        assert not np.array_equal(split_halves(ds, seed=1)[0], first)
        weights, arch = half_iterators(ds, 8, seed=0, decode_threads=1)
        try:
            assert list(weights.keys) == list(first) and list(arch.keys) == list(second)
            batch = next(iter(arch))
            assert batch.data[0].shape == (8, 3, 112, 112) and batch.label[0].shape == (8,)
        finally:
            weights.close()
            arch.close()


def _search(data, out, *extra):
    return main(["--data-dir", str(data), "--out", str(out)] + TINY + list(extra))


def _record(path):
    with open(path) as f:
        return json.load(f)["search"]


def _weights(path):
    return {k: np.array(v) for k, v in _record(path)["weights"].items()}


def _derive_by_hand(weights, primitives, nodes=4):
    """DARTS' rule written out again: per node the two edges whose best weight other than none's is highest."""
    kept = [i for i, p in enumerate(primitives) if p != "none"]
    cell, row = [], 0
    for j in range(nodes):
        block = weights[row:row + 2 + j][:, kept]
        row += 2 + j
        order = sorted(range(2 + j), key=lambda i: (-block[i].max(), i))[:2]
        cell.append([[primitives[kept[int(block[i].argmax())]], i] for i in order])
    return cell


def _search_command(data, out, *extra):
    """recognition/search.py in a process of its own (it turns MXNet's oneDNN off before MXNet runs)."""
    proc = subprocess.run([sys.executable, "-u", os.path.join(ROOT, "recognition", "search.py"), "--data-dir",
                           str(data), "--out", str(out)] + TINY + list(extra), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return proc.stderr


@pytest.mark.slow
def test_tiny_search_resumes_writes_genotypes_and_its_genotype_trains(synthetic_dir, tmp_path, caplog):
    out = tmp_path / "search"
    log = _search_command(synthetic_dir, out, "--epochs", "1")
    log += _search_command(synthetic_dir, out, "--epochs", "2", "--resume")
    assert "oneDNN kernels are on" not in log
    assert "Epoch[0] Batch [" in log and "Speed: " in log and "arch_lossvalue=" in log
    assert "resuming the search" in log and "after epoch 1" in log
    assert "search epoch 2:" in log and "peak memory" in log and "Network FLOPs:" in log
    names = set(os.listdir(out))
    assert {"genotype-0001.json", "genotype-0002.json", "genotype.json", "alphas-0001.png", "alphas-0002.png",
            "alphas.png", "search-resume.json", "search-resume.params", "search-resume.states",
            "search-symbol.json"} <= names
    assert not [n for n in names if ".tmp" in n]
    with open(out / "alphas.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    first, second = _weights(out / "genotype-0001.json"), _weights(out / "genotype-0002.json")
    for kind in ("normal", "reduce"):
        assert first[kind].shape == (14, 8)
        np.testing.assert_allclose(first[kind].sum(axis=1), 1.0, atol=1e-5)
        assert np.abs(second[kind] - first[kind]).max() > 1e-5  # the second epoch moved the architecture
    for path in (out / "genotype-0002.json", out / "genotype.json"):
        with open(path) as f:
            saved = json.load(f)
        assert saved["search"]["epoch"] == 2 and saved["search"]["step"] == 8
        for kind in ("normal", "reduce"):
            assert saved[kind] == _derive_by_hand(second[kind], saved["search"]["primitives"])
        assert genotypes.load(str(path)).normal_concat == (2, 3, 4, 5)

    # a new search into the same folder is refused; a resumed one must keep the settings
    with pytest.raises(FaceKDError, match="already holds a search"):
        _search(synthetic_dir, out, "--epochs", "2")
    with pytest.raises(FaceKDError, match="--layers gives layers 4, but the search in"):
        main(["--data-dir", str(synthetic_dir), "--out", str(out), "--layers", "4", "--init-channels", "4",
              "--image-size", "56", "--batch-size", "8", "--seed", "3", "--resume", "--no-progress"])

    params = out / "search-resume.params"
    data = bytearray(params.read_bytes())
    data[-64:] = b"\0" * 64  # damaged; MXNet would still load it
    params.write_bytes(bytes(data))
    with pytest.raises(FaceKDError, match="search-resume.params does not match its checksum"):
        _search(synthetic_dir, out, "--epochs", "3", "--resume")

    # the genotype trains with train.py
    caplog.set_level("INFO")
    train_main(["--network", "pocketnet", "--genotype", str(out / "genotype.json"), "--layers", "4",
                "--init-channels", "4", "--loss", "arcface", "--dataset", "synthetic", "--data-dir",
                str(synthetic_dir), "--models-root", str(tmp_path / "models"), "--per-batch-size", "4",
                "--max-steps", "2", "--verbose", "1000", "--ckpt", "0", "--frequent", "1", "--seed", "0"])
    log = caplog.text
    assert "Network params: " in log and "Network FLOPs: " in log and "finished 2 steps" in log


@pytest.mark.parametrize("extra,fragment", [
    (["--loss", "angular_distillation"], "--loss 'angular_distillation' cannot be the search's head"),
    (["--batch-size", "64"], "the weights half has 36 images, fewer than one batch of 64"),
    (["--image-size", "120"], "--image-size 120 is larger than the 112x112 images"),
    (["--w-lr-min", "0.5"], "--w-lr-min 0.5 is above --w-lr 0.1"),
    (["--init-channels", "5"], "--init-channels 5 is invalid: it must be an even integer"),
    (["--image-size", "36"], "--image-size 36 with --layers 3: the cells' feature maps do not fit"),
    (["--cpu-contexts", "3"], "--batch-size 8 does not split over 3 devices"),
    (["--resume"], "holds no complete search state"),
])
def test_bad_search_input_is_one_error(synthetic_dir, tmp_path, extra, fragment):
    out = tmp_path / "out"
    with pytest.raises(FaceKDError) as info:
        _search(synthetic_dir, out, *extra)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()  # nothing written


def test_a_diverged_loss_stops_the_search():
    run = SimpleNamespace(step=2, s=SimpleNamespace(w_lr=1e30))
    Search._check_finite(run, 38.2, "weight-half")
    with pytest.raises(FaceKDError) as info:
        Search._check_finite(run, float("nan"), "weight-half")
    assert str(info.value) == ("step 2: the weight-half loss is nan; the search stopped before writing this epoch "
                               "(the last epoch's files are kept). Lower --w-lr (now 1e+30) or the head's scale "
                               "--loss-s, and --resume")


def test_soft_labels_are_refused():
    soft = SimpleNamespace(layout=SimpleNamespace(kind=labels.SOFT), rec_path="faces_soft/train.rec")
    with pytest.raises(FaceKDError, match="faces_soft/train.rec has soft labels"):
        resolve(parse_args(["--data-dir", "faces_soft", "--out", "o"]), soft, 1)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "search.py"), "--data-dir",
                           str(tmp_path / "missing"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert lines == [f"search.py: error: --data-dir {tmp_path / 'missing'} does not exist; make a dataset with "
                     "data_prepare/face2rec2.py (or data_prepare/make_synthetic.py)"]
