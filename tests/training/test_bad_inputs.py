"""train.py's bad inputs: each is refused with one FaceKDError line naming the flag or file and
the fix, before any training step; nothing the user had is overwritten."""
import json
import logging
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.training.trainer import main

from trainhelpers import link_training_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _argv(data_dir, models_root, *extra):
    return ["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", str(data_dir),
            "--models-root", str(models_root), "--per-batch-size", "4", "--frequent", "1", "--seed", "1",
            *extra]


def _error(argv):
    with pytest.raises(FaceKDError) as info:
        main(argv)
    return str(info.value)


@pytest.mark.parametrize("flags, message", [
    (["--kvstore", "foo"], r"--kvstore 'foo' is invalid: it must be one of local, device, .*dist_sync"),
    (["--max-steps", "-5"], r"--max-steps -5 is invalid: it must be an integer >= 0"),
    (["--end-epoch", "0"], r"--end-epoch 0 is invalid: it must be an integer >= 1"),
    (["--frequent", "0"], r"--frequent 0 is invalid: it must be an integer >= 1"),
    (["--verbose", "0"], r"--verbose 0 is invalid"),
    (["--lr", "-0.1"], r"--lr -0.1 is invalid: it must be a finite number > 0"),
    (["--lr", "nan"], r"--lr nan is invalid: it must be a finite number > 0"),
    (["--lr", "inf"], r"--lr inf is invalid"),
    (["--mom", "1.5"], r"--mom 1.5 is invalid: it must be in \[0, 1\)"),
    (["--wd", "-1"], r"--wd -1.0 is invalid"),
    (["--emb-size", "0"], r"--emb-size 0 is invalid: it must be an integer >= 1"),
    (["--per-batch-size", "0"], r"--per-batch-size 0 is invalid"),
    (["--ckpt", "7"], r"--ckpt 7 is invalid: it must be 0, 1, 2 or 3"),
    (["--resume", "--pretrained", "x"], r"--resume and --pretrained exclude each other"),
])
def test_bad_flags_are_named(synthetic_dir, tmp_path, flags, message):
    with pytest.raises(FaceKDError, match=message):
        main(_argv(synthetic_dir, tmp_path, *flags))
    assert not os.path.exists(tmp_path / "y1-arcface-synthetic")  # refused before anything is made


def test_dist_kvstore_without_a_parameter_server(synthetic_dir, tmp_path, monkeypatch):
    for name in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER", "DMLC_NUM_WORKER"):
        monkeypatch.delenv(name, raising=False)
    message = _error(_argv(synthetic_dir, tmp_path, "--kvstore", "dist_sync"))
    assert "--kvstore dist_sync runs over a parameter server" in message and "DMLC_ROLE" in message
    assert "launch.py" in message


def test_unwritable_models_root_is_found_at_start(synthetic_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    message = _error(_argv(synthetic_dir, blocker, "--max-steps", "2"))
    assert message.startswith(f"--models-root {blocker}/y1-arcface-synthetic: {blocker} is a file")
    assert "Epoch[" not in caplog.text and blocker.read_text() == "not a folder"


def test_binary_property_is_one_line(synthetic_dir, tmp_path):
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    os.remove(os.path.join(data, "property"))
    with open(os.path.join(data, "property"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    message = _error(_argv(data, tmp_path / "models"))
    assert "property: expected one line 'num_classes,height,width'" in message


def test_images_the_network_cannot_take(tmp_path, capfd):
    import cv2

    from facekd.data.recordio import RecordDatasetWriter

    folder = str(tmp_path / "small")
    with RecordDatasetWriter(folder, num_classes=2, image_size=(96, 96)) as writer:
        for i, cls in enumerate([0, 0, 1, 1]):
            writer.add(float(cls), cv2.imencode(".png", np.full((96, 96, 3), 40 * i, np.uint8))[1].tobytes())
    message = _error(_argv(folder, tmp_path / "models", "--per-batch-size", "2"))
    assert message.startswith(f"--network y1 cannot take the 96x96 images of {folder}")
    assert "Traceback" not in message and "its input size, 112x112" in message
    assert "infer_shape error" not in capfd.readouterr().out  # MXNet's own print is not shown


def test_declared_classes_far_beyond_the_identities_warn(synthetic_dir, tmp_path, caplog):
    from facekd import losses
    from facekd.training.args import parse_args
    from facekd.training.trainer import open_training_set

    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    os.remove(os.path.join(data, "property"))
    with open(os.path.join(data, "property"), "w") as f:
        f.write("200000,112,112\n")
    _, cfg = parse_args(_argv(data, tmp_path / "models"))
    with caplog.at_level(logging.WARNING):
        open_training_set(cfg, losses.get_loss(cfg.loss)).close()
    assert "property declares 200000 classes but the set has 12 identities" in caplog.text


def test_teacher_flag_is_named_as_given(soft_dir, tmp_path):
    base = ["--network", "y1", "--loss", "margin_distillation", "--dataset", "synthetic_soft", "--data-dir",
            str(soft_dir), "--models-root", str(tmp_path), "--per-batch-size", "6"]
    message = _error(base + ["--teacher", str(tmp_path / "teacher")])
    assert message.startswith(f"--teacher {str(tmp_path / 'teacher')!r}: expected 'prefix,epoch'")
    # the dataset table's default teacher (./models/y2-arcface-synthetic/model,1) does not exist here
    message = _error(base)
    assert message.startswith("--teacher (the default of dataset table 'synthetic_soft' in config.py) "
                              "./models/y2-arcface-synthetic/model,1: checkpoint symbol")
    assert "train that teacher first, or give --teacher prefix,epoch" in message


def test_emb_size_is_a_flag_error_not_a_config_one(synthetic_dir, tmp_path):
    message = _error(_argv(synthetic_dir, tmp_path, "--emb-size", "0"))
    assert "--emb-size" in message and "config.py" not in message


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture
def trained(synthetic_dir, tmp_path):
    """A run folder after a 2-step run with --ckpt 2: model-0001 complete."""
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    root = tmp_path / "models"
    main(_argv(data, root, "--max-steps", "2", "--verbose", "2", "--ckpt", "2"))
    return data, root, os.path.join(root, "y1-arcface-synthetic", "model")


def _digest(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


@pytest.mark.slow
def test_a_new_run_never_overwrites_an_earlier_runs_checkpoints(trained, caplog):
    data, root, prefix = trained
    before = _digest(os.path.dirname(prefix))
    message = _error(_argv(data, root, "--max-steps", "2", "--verbose", "2", "--ckpt", "2"))
    assert "already holds checkpoints of an earlier run (model-0001, model-resume)" in message and "--resume" in message
    assert _digest(os.path.dirname(prefix)) == before


@pytest.mark.slow
def test_resume_skips_an_incomplete_set_and_never_overwrites_complete_ones(trained, caplog):
    """model-0002.params without its .json (a crash between the renames): --resume continues
    from model-0001, says why it skipped 0002, and the complete model-0001 is not touched."""
    caplog.set_level("INFO")
    data, root, prefix = trained
    for ext in (".params", ".states", ".json"):  # only numbered sets: no resume set to prefer
        os.remove(prefix + "-resume" + ext)
    _, arg_params, aux_params = mx.model.load_checkpoint(prefix, 1)
    mx.nd.save(prefix + "-0002.params", {f"arg:{k}": v * 0 for k, v in arg_params.items()})
    first = open(prefix + "-0001.params", "rb").read()
    main(_argv(data, root, "--max-steps", "4", "--verbose", "2", "--ckpt", "2", "--resume"))
    assert f"--resume: skipping {prefix}-0002: model-0002.json missing" in caplog.text
    assert f"resuming from {prefix}-0001 at step 2" in caplog.text
    assert open(prefix + "-0001.params", "rb").read() == first
    meta = json.load(open(prefix + "-0002.json"))
    assert meta["step"] == 4  # the round after the resumed one, written completely
    _, second, _ = mx.model.load_checkpoint(prefix, 2)
    assert np.abs(second["fc7_weight"].asnumpy()).max() > 0  # not the zeros of the incomplete set


@pytest.mark.slow
def test_resume_without_a_complete_set_fails(trained):
    data, root, prefix = trained
    os.remove(prefix + "-0001.json")
    os.remove(prefix + "-resume.json")
    message = _error(_argv(data, root, "--max-steps", "4", "--resume"))
    assert message.startswith(f"--resume: no complete checkpoint {prefix}-NNNN")


@pytest.mark.slow
@pytest.mark.parametrize("text, message", [
    ('{"step": 2, "rounds"', r"model-0001\.json: not a readable checkpoint meta"),
    ('{"step": "twenty", "rounds": 1, "highest_last": 0.5, "highest_sum": 1.0}',
     r"model-0001\.json: 'step' is 'twenty', expected an integer >= 0"),
    ('[2, 1]', r"model-0001\.json: expected a JSON object \(checkpoint meta\), got a list"),
    ('{"rounds": 1, "highest_last": 0.5, "highest_sum": 1.0}', r"model-0001\.json: 'step' is missing"),
    ('\udcff', r"model-0001\.json: not a readable checkpoint meta"),
])
def test_resume_with_a_damaged_meta_is_one_line(trained, text, message):
    data, root, prefix = trained
    with open(prefix + "-0001.json", "wb") as f:
        f.write(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(FaceKDError, match=message + r".*restore it, or move the model-0001\.\* files away"):
        main(_argv(data, root, "--max-steps", "4", "--resume"))


@pytest.mark.slow
def test_resume_or_pretrained_of_another_size_is_one_line(trained, tmp_path):
    data, root, prefix = trained
    message = _error(_argv(data, root, "--max-steps", "4", "--resume", "--emb-size", "128"))
    assert message.startswith(f"--resume {prefix}: ") and "has shape" in message and "--emb-size" in message
    message = _error(_argv(data, tmp_path / "other", "--max-steps", "2", "--emb-size", "128",
                           "--pretrained", prefix, "--pretrained-epoch", "1"))
    assert message.startswith(f"--pretrained {prefix}: ") and "(512, " in message and "(128, " in message
    message = _error(_argv(data, tmp_path / "other", "--network", "y2", "--max-steps", "2",
                           "--pretrained", prefix, "--pretrained-epoch", "1"))
    assert message.startswith(f"--pretrained {prefix}: ") and "another --network" in message


@pytest.mark.slow
def test_leftovers_of_a_killed_save_are_cleared_and_reported(trained, caplog):
    caplog.set_level("INFO")
    data, root, prefix = trained
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftovers = [f"{prefix}-0002.params.tmp{dead.pid}", f"{prefix}-symbol.json.tmp{dead.pid}",
                 f"{prefix}-0002.json.tmp{dead.pid}"]
    for path in leftovers:
        with open(path, "wb") as f:
            f.write(b"half written")
    mine = f"{prefix}-0003.params.tmp{os.getpid()}"  # a live process's file stays
    open(mine, "wb").close()
    main(_argv(data, root, "--max-steps", "4", "--verbose", "2", "--ckpt", "2", "--resume"))
    for path in leftovers:
        assert not os.path.exists(path)
        assert f"removed {path}, left by an interrupted run (process {dead.pid})" in caplog.text
    assert os.path.exists(mine)
    os.remove(mine)


# ----------------------------------------------------------------------------- through the real script
@pytest.mark.slow
@pytest.mark.parametrize("flags, phrase", [
    (["--lr", "nan"], "--lr nan is invalid"),
    (["--kvstore", "dist_sync"], "runs over a parameter server"),
    (["--end-epoch", "0"], "--end-epoch 0 is invalid"),
])
def test_the_script_prints_one_line_and_exits_2(synthetic_dir, tmp_path, flags, phrase):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMLC_")}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "train.py"),
                           *_argv(synthetic_dir, tmp_path, *flags)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "Subgraph backend" not in line]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and phrase in lines[0], proc.stderr


@pytest.mark.slow
def test_a_rec_damaged_mid_file_stops_training_naming_the_record(synthetic_dir, tmp_path, caplog):
    """The open samples a few records; a damaged one elsewhere is found when the iterator reads it."""
    import shutil

    from facekd.data.recordio import RecordDataset, read_index

    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    offsets = read_index(str(data / "train.idx"))
    with RecordDataset(str(data)) as ds:
        n = ds.num_images
    sampled = {1, n} | {int(k) for k in np.linspace(1, n, 18).astype(np.int64)}
    key = next(k for k in range(n // 2, n) if k not in sampled)
    with open(data / "train.rec", "r+b") as f:  # overwrite the record's framing magic
        f.seek(int(offsets[key]))
        f.write(b"\0" * 8)
    message = _error(_argv(data, tmp_path / "models", "--max-steps", "100", "--verbose", "100", "--ckpt", "0",
                           "--no-mirror"))
    assert message.startswith(f"{data}/train.rec: record {key} at byte {int(offsets[key])} is corrupt")
    assert "Traceback" not in message
