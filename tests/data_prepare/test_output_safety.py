"""Outputs never destroy inputs or folders a tool did not write; leftovers of killed runs are cleared
(or restored) and said so; bad input records are named by input file and key."""
import hashlib
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from prepare_helpers import ROOT, read_raw, run_script

MARKER = ".facekd-output"


# ----------------------------------------------------------------------------- helpers

def fails(name, argv, capsys, *needles):
    """Run a script; expect exit 2 and exactly one stderr line holding every needle; returns it."""
    code, out, err = run_script(name, argv, capsys)
    assert code == 2, (out, err)
    # a failure mid-run comes after the progress bar's lines (tqdm: '\r'-separated, with '%|')
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(root):
    """{relative path: sha256} of every file under ``root`` (links followed), and every folder."""
    out = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        out[rel + "/"] = None
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
    return out


def dead_pid():
    """The id of a process that has exited (spawned and waited for)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def copy_dataset(src, dst, marker=True):
    os.makedirs(dst)
    for name in os.listdir(src):
        if marker or name != MARKER:
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    return str(dst)


@pytest.fixture
def nested(synthetic_dir, tmp_path):
    """datasets/x/{in (the input dataset), sib/ (someone's files), notes.txt}: the output must not touch them."""
    x = tmp_path / "datasets" / "x"
    data = copy_dataset(str(synthetic_dir), x / "in", marker=False)  # a real dataset carries no marker
    (x / "sib").mkdir()
    (x / "sib" / "results.csv").write_text("epoch,acc\n1,0.99\n")
    (x / "sib" / "deep").mkdir()
    (x / "sib" / "deep" / "model-0001.params").write_bytes(os.urandom(4096))
    (x / "notes.txt").write_text("do not delete")
    return tmp_path / "datasets", x, data


# ----------------------------------------------------------------------------- 1. the output contains the input

def test_out_parent_of_input_is_refused_by_the_real_script(nested, teacher):
    """The reported data loss: --out a parent of --data-dir with --overwrite deleted everything."""
    root, x, data = nested
    before = snapshot(root)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "data_prepare", "save_embeddings.py"),
                           "--model", teacher[0], "--data-dir", data, "--out", str(x), "--overwrite"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"save_embeddings.py: error: --out {x} contains the input --data-dir {data}; replacing it would "
        "delete the input, choose an --out outside it"]
    assert snapshot(root) == before


@pytest.mark.parametrize("layout", ["parent", "grandparent", "symlink to parent", "inside input", "same",
                                    "input named OUT.partial"])
def test_save_embeddings_out_and_input_overlap(nested, teacher, tmp_path, capsys, layout):
    root, x, data = nested
    argv_out = {"parent": str(x), "grandparent": str(root), "inside input": os.path.join(data, "soft"),
                "same": data}.get(layout)
    if layout == "symlink to parent":
        os.symlink(x, tmp_path / "link")
        argv_out = str(tmp_path / "link")
    if layout == "input named OUT.partial":
        argv_out = str(x / "soft")
        os.rename(data, str(x / "soft.partial"))
        data = str(x / "soft.partial")
    before = snapshot(root)
    needle = {"parent": "contains the input --data-dir", "grandparent": "contains the input --data-dir",
              "symlink to parent": "contains the input --data-dir", "inside input": "is inside the input --data-dir",
              "same": "is the input --data-dir", "input named OUT.partial": "a staging name of --out"}[layout]
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", data, "--out", argv_out, "--overwrite"],
          capsys, "--out", needle)
    fails("bin_get_images", ["--data-dir", data, "--out", argv_out, "--overwrite"], capsys, "--out", needle)
    assert snapshot(root) == before


def test_overwrite_refuses_a_folder_the_tool_did_not_write(nested, teacher, capsys):
    root, x, data = nested
    before = snapshot(root)
    line = fails("save_embeddings", ["--model", teacher[0], "--data-dir", data, "--out", str(x / "sib"),
                                     "--overwrite"], capsys)
    assert line.endswith(f"error: --out {x / 'sib'} exists and was not written by save_embeddings.py (no "
                         ".facekd-output marker); remove it yourself or choose another --out")
    fails("bin_get_images", ["--data-dir", data, "--out", str(x / "sib"), "--overwrite"], capsys,
          f"--out {x / 'sib'} exists and was not written by bin_get_images.py (no .facekd-output marker)")
    # a file given as --out is not a dataset either
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", data, "--out", str(x / "notes.txt"),
                              "--overwrite"], capsys, "was not written by save_embeddings.py")
    assert snapshot(root) == before


def test_overwrite_refuses_another_tools_output(synthetic_dir, teacher, tmp_path, capsys):
    work = tmp_path / "work"
    code, _, err = run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work)], capsys)
    assert code == 0, err
    assert (work / MARKER).read_text().splitlines()[-1] == "bin_get_images.py work-folder"
    before = snapshot(tmp_path)
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", str(synthetic_dir), "--out", str(work),
                              "--overwrite"], capsys,
          f"--out {work} exists and was not written by save_embeddings.py (its .facekd-output marker names "
          "bin_get_images.py); remove it yourself")
    assert snapshot(tmp_path) == before
    code, _, err = run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work),
                                                 "--overwrite"], capsys)
    assert code == 0, err  # its own output: replaced


def test_make_synthetic_overwrite_spares_a_dataset_it_did_not_write(nested, tmp_path, capsys):
    root, x, data = nested
    before = snapshot(root)
    argv = ["--identities", "3", "--images-per-identity", "2", "--val-identities", "2", "--pairs", "2",
            "--workers", "1", "--quiet", "--overwrite"]
    fails("make_synthetic", ["--out", data] + argv, capsys,
          f"--out {data} exists and was not written by make_synthetic.py (no .facekd-output marker); "
          "remove it yourself or choose another --out")
    assert snapshot(root) == before
    out = tmp_path / "synth"
    assert run_script("make_synthetic", ["--out", str(out)] + argv, capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = run_script("make_synthetic", ["--out", str(out), "--seed", "1"] + argv, capsys)
    assert code == 0, err  # its own dataset: the dataset files are replaced, the rest kept
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / MARKER).read_text().splitlines()[-1] == "make_synthetic.py synthetic-dataset"


# ----------------------------------------------------------------------------- 2. leftovers of a killed run

def _streaming(data, out, teacher, capsys, *extra):
    return run_script("save_embeddings", ["--model", teacher[0], "--data-dir", str(data), "--out", str(out),
                                          "--batch-size", "8", *extra], capsys)


def test_rerun_clears_old_copy_and_partial(synthetic_dir, teacher, tmp_path, capsys):
    """Killed after the new output was renamed in: OUT.old-PID (a whole dataset) and OUT.partial remain."""
    out = tmp_path / "o"
    assert _streaming(synthetic_dir, out, teacher, capsys)[0] == 0
    pid = dead_pid()
    old = tmp_path / f"o.old-{pid}"
    shutil.copytree(out, old)
    partial = tmp_path / "o.partial"
    partial.mkdir()
    (partial / MARKER).write_text("save_embeddings.py soft-dataset\n")
    (partial / f"train.rec.tmp{pid}").write_bytes(b"\0" * 999)
    code, _, err = _streaming(synthetic_dir, out, teacher, capsys, "--overwrite")
    assert code == 0, err
    assert f"save_embeddings.py: removed {old}, left by an interrupted run (process {pid})" in err
    assert f"save_embeddings.py: removed {partial}, the unfinished output of an interrupted run" in err
    assert sorted(os.listdir(tmp_path)) == ["o"]
    assert read_raw(str(out))["header"] == read_raw(str(synthetic_dir))["header"]


def test_old_copy_is_restored_when_the_output_is_missing(synthetic_dir, teacher, tmp_path, capsys):
    """Killed between the two renames: OUT.old-PID is the only copy of the previous output."""
    out = tmp_path / "o"
    assert _streaming(synthetic_dir, out, teacher, capsys)[0] == 0
    previous = snapshot(out)
    pid = dead_pid()
    old = tmp_path / f"o.old-{pid}"
    os.rename(out, old)
    (tmp_path / "o.partial").mkdir()
    (tmp_path / "o.partial" / MARKER).write_text("save_embeddings.py soft-dataset\n")
    code, _, err = _streaming(synthetic_dir, out, teacher, capsys)  # without --overwrite: keep it
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == (f"save_embeddings.py: restored {out} from {old}, the previous output set aside by "
                        "an interrupted run")
    assert lines[-1].endswith(f"--out {out} already exists; choose another path or pass --overwrite")
    assert snapshot(out) == previous
    assert sorted(os.listdir(tmp_path)) == ["o"]


def test_old_copy_of_a_running_process_is_left_alone(synthetic_dir, teacher, tmp_path, capsys):
    out = tmp_path / "o"
    assert _streaming(synthetic_dir, out, teacher, capsys)[0] == 0
    alive = subprocess.Popen(["sleep", "30"])
    try:
        old = tmp_path / f"o.old-{alive.pid}"
        old.mkdir()
        (old / "x").write_text("in use")
        code, _, err = _streaming(synthetic_dir, out, teacher, capsys, "--overwrite")
        assert code == 0, err
        assert (old / "x").read_text() == "in use" and "removed" not in err
    finally:
        alive.kill()
        alive.wait()


def test_partial_not_written_by_the_tool_is_refused(synthetic_dir, teacher, tmp_path, capsys):
    partial = tmp_path / "o.partial"
    partial.mkdir()
    (partial / "thesis.tex").write_text("mine")
    before = snapshot(tmp_path)
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", str(synthetic_dir), "--out",
                              str(tmp_path / "o")], capsys,
          f"--out {tmp_path / 'o'}: {partial} exists and was not written by save_embeddings.py")
    assert snapshot(tmp_path) == before


def test_stepwise_embeddings_leftovers(synthetic_dir, teacher, tmp_path, capsys):
    work = tmp_path / "w"
    assert run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work)], capsys)[0] == 0
    labels = work / "labels"
    pid = dead_pid()
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    saved = labels / f"embeddings.npy.old-{pid}"  # the previous vectors, set aside by a killed run
    with open(saved, "wb") as f:
        np.save(f, vectors)
    (labels / "embeddings.npy.partial").write_bytes(b"\0" * 128)
    argv = ["--model", teacher[0], "--images", str(work / "images"), "--labels", str(labels)]
    code, _, err = run_script("save_embeddings", argv, capsys)
    assert code == 2
    assert f"restored {labels / 'embeddings.npy'} from {saved}" in err
    assert f"removed {labels / 'embeddings.npy.partial'}, the unfinished output" in err
    np.testing.assert_array_equal(np.load(labels / "embeddings.npy"), vectors)
    assert sorted(os.listdir(labels)) == ["embeddings.npy", "index.tsv"]


def test_make_synthetic_clears_its_staging_folder(tmp_path, capsys):
    pid = dead_pid()
    stage = tmp_path / f".d.tmp{pid}"
    stage.mkdir()
    (stage / "train.rec").write_bytes(b"\0" * 1000)
    code, _, err = run_script("make_synthetic", ["--out", str(tmp_path / "d"), "--identities", "3",
                                                 "--images-per-identity", "2", "--val-identities", "2",
                                                 "--pairs", "2", "--workers", "1", "--quiet"], capsys)
    assert code == 0, err
    assert f"make_synthetic.py: removed {stage}, left by an interrupted run (process {pid})" in err
    assert sorted(os.listdir(tmp_path)) == ["d"]


# ----------------------------------------------------------------------------- 3. an unwritable --out

@pytest.mark.parametrize("script", ["save_embeddings", "make_synthetic", "bin_get_images"])
def test_out_under_a_file_fails_at_start(synthetic_dir, tmp_path, capsys, script):
    (tmp_path / "somefile").write_text("in the way")
    out = tmp_path / "somefile" / "sub"
    argv = {"save_embeddings": ["--model", str(tmp_path / "no-such-model") + ",1", "--data-dir",
                                str(synthetic_dir), "--out", str(out)],  # a teacher load would fail on --model
            "make_synthetic": ["--out", str(out), "--identities", "3", "--images-per-identity", "2",
                               "--val-identities", "2", "--pairs", "2", "--quiet"],
            "bin_get_images": ["--data-dir", str(synthetic_dir), "--out", str(out)]}[script]
    line = fails(script, argv, capsys)
    assert line.endswith(f"error: --out {out}: {tmp_path / 'somefile'} is a file, not a folder; choose another path")
    assert sorted(os.listdir(tmp_path)) == ["somefile"]


def test_out_under_a_file_real_command_line(synthetic_dir, tmp_path):
    (tmp_path / "somefile").write_text("in the way")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "data_prepare", "save_embeddings.py"),
                           "--model", str(tmp_path / "nothing") + ",1", "--data-dir", str(synthetic_dir),
                           "--out", str(tmp_path / "somefile" / "sub")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"save_embeddings.py: error: --out {tmp_path / 'somefile' / 'sub'}: {tmp_path / 'somefile'} is a file, "
        "not a folder; choose another path"]


def test_model_without_epoch_names_the_format(synthetic_dir, tmp_path, capsys):
    line = fails("save_embeddings", ["--model", "./models/r100/model", "--data-dir", str(synthetic_dir),
                                     "--out", str(tmp_path / "o")], capsys)
    assert line.endswith("error: --model './models/r100/model': expected 'prefix,epoch' "
                         "(e.g. ./models/y1-arcface-emore/model,1)")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- 4. a .rec damaged mid-file

def _offsets(folder):
    pairs = [line.split("\t") for line in (folder / "train.idx").read_text().splitlines()]
    return {int(k): int(o) for k, o in pairs}


@pytest.mark.parametrize("damage", ["magic", "64 bytes"])
def test_save_embeddings_on_a_damaged_rec(synthetic_dir, teacher, tmp_path, capsys, damage):
    data = tmp_path / "in"
    copy_dataset(str(synthetic_dir), data)
    key = 40
    offset = _offsets(data)[key]
    with open(data / "train.rec", "r+b") as f:
        if damage == "magic":
            f.seek(offset)
            f.write(b"\x0b\xad\xf0\x0d")
        else:  # the end of record 39's image, then record 40's frame and header
            f.seek(offset - 16)
            f.write(b"\xee" * 64)
    line = fails("save_embeddings", ["--model", teacher[0], "--data-dir", str(data), "--out", str(tmp_path / "o"),
                                     "--batch-size", "8"], capsys)
    assert f"error: {data / 'train.rec'}: record {key} at byte {offset} is corrupt (" in line
    assert line.endswith("); the file is damaged, re-copy or rebuild it")
    assert "(Traceback" not in line
    assert sorted(os.listdir(tmp_path)) == ["in"]  # nothing under OUT or OUT.partial


# ----------------------------------------------------------------------------- 5. a bad class id in an input record

def _rewrite_with_label(src, dst, key, label):
    """``src`` rewritten with MXNet's own writer, image ``key`` carrying ``label``; other records unchanged."""
    raw = mx.recordio.MXIndexedRecordIO(str(src / "train.idx"), str(src / "train.rec"), "r")
    os.makedirs(dst)
    out = mx.recordio.MXIndexedRecordIO(str(dst / "train.idx"), str(dst / "train.rec"), "w")
    for k in sorted(raw.keys):
        record = raw.read_idx(k)
        if k == key:
            header, payload = mx.recordio.unpack(record)
            record = mx.recordio.pack(mx.recordio.IRHeader(0, label, key, 0), payload)
        out.write_idx(k, record)
    raw.close()
    out.close()
    shutil.copy(src / "property", dst / "property")
    return dst


@pytest.mark.parametrize("label, shown", [(99.0, "class id 99 "), (-1.0, "class id -1 "),
                                          (float("nan"), "class id nan "), (2.5, "class id 2.5 ")])
def test_bad_class_id_names_the_input_record(synthetic_dir, teacher, tmp_path, capsys, label, shown):
    key = 3  # not one of the labels sampled when the dataset is opened
    data = _rewrite_with_label(synthetic_dir, tmp_path / "in", key, label)
    rec = data / "train.rec"
    for script, argv in [("save_embeddings", ["--model", teacher[0], "--data-dir", str(data), "--out",
                                              str(tmp_path / "o"), "--batch-size", "8"]),
                         ("bin_get_images", ["--data-dir", str(data), "--out", str(tmp_path / "w")])]:
        line = fails(script, argv, capsys, f"{rec} record {key}: ", shown)
        assert line.endswith(f"is not an integer in 0..11 (num_classes of {data / 'property'}); fix that "
                             "record's label (rebuild the dataset with face2rec2.py) or num_classes in the "
                             "property file")
        assert ".partial" not in line
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_class_that_reappears_names_the_input_record(synthetic_dir, teacher, tmp_path, capsys):
    key = 40  # class 6 in the input; 0 again here
    data = _rewrite_with_label(synthetic_dir, tmp_path / "in", key, 0.0)
    line = fails("save_embeddings", ["--model", teacher[0], "--data-dir", str(data), "--out", str(tmp_path / "o"),
                                     "--batch-size", "8"], capsys)
    assert line.endswith(f"error: {data / 'train.rec'} record {key}: class 0 re-appears after other classes; the "
                         "images of one class must be contiguous, rebuild the dataset with its images grouped by "
                         "class (face2rec2.py)")
    assert ".partial" not in line
    assert sorted(os.listdir(tmp_path)) == ["in"]


# ----------------------------------------------------------------------------- the stepwise scripts' other inputs

def test_save_lst_refuses_to_write_over_its_inputs(synthetic_dir, teacher, tmp_path, capsys):
    work = tmp_path / "w"
    assert run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work)], capsys)[0] == 0
    assert run_script("save_embeddings", ["--model", teacher[0], "--images", str(work / "images"),
                                          "--labels", str(work / "labels")], capsys)[0] == 0
    data = tmp_path / "data"
    copy_dataset(str(synthetic_dir), data)
    base = ["--images", str(work / "images"), "--labels", str(work / "labels")]
    soft = tmp_path / "soft"
    soft.mkdir()
    (soft / "synth_easy.bin").write_bytes(b"someone else's target")
    before = snapshot(tmp_path)
    fails("save_lst", base + ["--out", str(data / "train.lst"), "--targets", str(data)], capsys,
          f"--out {data / 'train.lst'} is in the --targets folder {data}")
    fails("save_lst", base + ["--out", str(work / "images" / "train.lst")], capsys,
          f"is inside the input --images {work / 'images'}")
    fails("save_lst", base + ["--out", str(soft / "train.lst"), "--targets", str(data)], capsys,
          f"{soft / 'synth_easy.bin'} already exists and --targets would replace it")
    (tmp_path / "a.lst").mkdir()
    fails("save_lst", base + ["--out", str(tmp_path / "a.lst")], capsys, "is a folder")
    fails("save_lst", ["--images", str(tmp_path / "nope"), "--labels", str(work / "labels"),
                       "--out", str(tmp_path / "x" / "train.lst")], capsys, "--images", "not a folder")
    (tmp_path / "a.lst").rmdir()
    assert snapshot(tmp_path) == before


def test_save_lst_clears_its_leftover_and_rewrites(synthetic_dir, teacher, tmp_path, capsys):
    work = tmp_path / "w"
    assert run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work)], capsys)[0] == 0
    assert run_script("save_embeddings", ["--model", teacher[0], "--images", str(work / "images"),
                                          "--labels", str(work / "labels")], capsys)[0] == 0
    pid = dead_pid()
    (tmp_path / "soft").mkdir()
    leftover = tmp_path / "soft" / f"train.lst.tmp{pid}"
    leftover.write_text("1\thalf a list")
    code, _, err = run_script("save_lst", ["--images", str(work / "images"), "--labels", str(work / "labels"),
                                           "--out", str(tmp_path / "soft" / "train.lst")], capsys)
    assert code == 0, err
    assert f"save_lst.py: removed {leftover}, left by an interrupted run (process {pid})" in err
    assert os.listdir(tmp_path / "soft") == ["train.lst"]


def test_binary_index_is_one_line(synthetic_dir, teacher, tmp_path, capsys):
    work = tmp_path / "w"
    assert run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work)], capsys)[0] == 0
    index = work / "labels" / "index.tsv"
    index.write_bytes(index.read_bytes()[:40] + b"\xff\xfe\x00\x01" * 8 + b"\n")
    fails("save_embeddings", ["--model", teacher[0], "--images", str(work / "images"), "--labels",
                              str(work / "labels")], capsys, f"{index} line ", "re-run data_prepare/bin_get_images.py")
