"""The experiment driver: command running and logs, result parsing, tables and charts (hand-written inputs)."""
import io
import json
import os
import textwrap

import pytest

import experiments as ex  # bench/experiments.py (pytest's pythonpath)
from facekd.errors import FaceKDError
from facekd.evaluation.plots import parse_training_log


# ----------------------------------------------------------------------------- lines and logs

def test_line_cleaner_keeps_what_a_terminal_shows():
    c = ex.LineCleaner()
    assert c.feed("abc\rdef\nxy") == ["def"]
    assert c.feed("z\nbar  10%\rbar 100%\r          \rdone\n\n") == ["xyz", "done", ""]
    assert c.feed("tail\r 50%") == []
    assert c.flush() == [" 50%"]
    assert c.flush() == []


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "repo"
    (root / "recognition").mkdir(parents=True)
    (root / "recognition" / "train.py").write_text("")
    (root / "talk.py").write_text(textwrap.dedent("""\
        import sys
        print("speed line 1")
        sys.stderr.write("progress 10%\\rprogress 100%\\n")
        print("last words", sys.argv[1:])
        sys.exit(int(sys.argv[1]))
        """))
    return root


def test_runner_echoes_tees_and_times(fake_root, tmp_path):
    console = io.StringIO()
    runner = ex.CommandRunner(str(fake_root), console=console)
    log = tmp_path / "logs" / "talk.log"
    seconds = runner.run("talk.py", [0, "out dir"], str(log), label="talk")
    assert seconds > 0 and runner.timings == [("talk", seconds)]
    text = log.read_text().splitlines()
    assert text[0] == "$ python -u talk.py 0 'out dir'"
    assert text[1:] == ["speed line 1", "progress 100%", "last words ['0', 'out dir']"]
    out = console.getvalue()
    assert "\n$ python -u talk.py 0 'out dir'\n" in out and "progress 100%\n" in out
    assert not [p for p in os.listdir(log.parent) if ".tmp" in p]


def test_runner_failure_names_the_log_and_keeps_it(fake_root, tmp_path):
    runner = ex.CommandRunner(str(fake_root), console=io.StringIO())
    log = tmp_path / "fail.log"
    with pytest.raises(FaceKDError, match=r"talk.py failed \(exit status 3\): last words \['3'\].*fail.log"):
        runner.run("talk.py", [3], str(log))
    assert log.read_text().splitlines()[-1] == "last words ['3']"


def test_runner_checks_root_and_script(fake_root, tmp_path):
    with pytest.raises(FaceKDError, match="not a facekd repository"):
        ex.CommandRunner(str(tmp_path))
    runner = ex.CommandRunner(str(fake_root), console=io.StringIO())
    with pytest.raises(FaceKDError, match="script nothere.py not found"):
        runner.run("nothere.py", [], str(tmp_path / "x.log"))
    assert runner.rel(str(fake_root / "a" / "b")) == os.path.join("a", "b")
    assert runner.rel(str(tmp_path)) == str(tmp_path)


def test_write_text_is_atomic(tmp_path):
    path = tmp_path / "sub" / "table.md"
    ex.write_text(str(path), "| a |\n")
    assert path.read_text() == "| a |\n"
    assert os.listdir(path.parent) == ["table.md"]


# ----------------------------------------------------------------------------- parsing results

VERIFICATION_OUTPUT = [
    "decode synth_easy:  50%|#####     | 400/800",
    "[synth_easy]m/t/model,1\tXNorm: 20.500000\tAccuracy-Flip: 0.87500+-0.04167\tVAL@FAR=0.001: 0.1+-0.1 (FAR 0.001)"
    "\t201.0 img/s",
    "[synth_pose]m/t/model,1\tXNorm: 20.000000\tAccuracy-Flip: 0.86000+-0.03815\tVAL@FAR=0.001: 0.1+-0.1 (FAR 0)",
    "[synth_easy]m/s/model,1\tXNorm: 9.250000\tAccuracy-Flip: 0.91000+-0.02000\tVAL@FAR=0.001: 0.2+-0.1 (FAR 0)",
    "[synth_easy][300]Accuracy-Flip: 0.50000+-0.00000",
    "ROC written to roc.png",
]


def test_parse_verification_rows():
    rows = ex.parse_verification_rows(VERIFICATION_OUTPUT)
    assert [(r.target, r.model, r.xnorm, r.acc, r.std) for r in rows] == [
        ("synth_easy", "m/t/model,1", 20.5, 0.875, 0.04167),
        ("synth_pose", "m/t/model,1", 20.0, 0.86, 0.03815),
        ("synth_easy", "m/s/model,1", 9.25, 0.91, 0.02)]


def test_read_verification_log(tmp_path):
    log = tmp_path / "v.log"
    log.write_text("\n".join(VERIFICATION_OUTPUT) + "\n")
    got = ex.read_verification_log(str(log), ["m/t/model,1"], ["synth_pose", "synth_easy"])
    assert got == {"m/t/model,1": {"synth_pose": ex.Accuracy(0.86, 0.03815),
                                   "synth_easy": ex.Accuracy(0.875, 0.04167)}}
    with pytest.raises(FaceKDError, match=r"no Accuracy-Flip row of m/s/model,1 on synth_pose"):
        ex.read_verification_log(str(log), ["m/s/model,1"], ["synth_easy", "synth_pose"])


TRAINING_LOG = """\
Epoch[0] Batch [0-20]\tSpeed: 80.00 samples/sec\tacc=0.000000\tlossvalue=17.6
[synth_easy][100]XNorm: 20.8
[synth_easy][100]Accuracy-Flip: 0.73000+-0.07881
[synth_age][100]Accuracy-Flip: 0.63333+-0.05627
[100]Accuracy-Highest: 0.63333
[synth_easy][200]Accuracy-Flip: 0.83667+-0.03859
[synth_age][200]Accuracy-Flip: 0.61000+-0.04311
"""


def test_accuracies_at_step():
    log = parse_training_log(TRAINING_LOG.splitlines())
    assert ex.accuracies_at_step(log, 100, ["synth_easy", "synth_age"]) == {
        "synth_easy": ex.Accuracy(0.73, 0.07881), "synth_age": ex.Accuracy(0.63333, 0.05627)}
    with pytest.raises(FaceKDError, match=r"\[synth_pose\]\[100\]Accuracy-Flip"):
        ex.accuracies_at_step(log, 100, ["synth_pose"])


def test_saved_accuracies_follow_the_checkpoint_meta(tmp_path):
    (tmp_path / "train.log").write_text(TRAINING_LOG)
    prefix = str(tmp_path / "model")
    (tmp_path / "model-0001.json").write_text(json.dumps({"step": 100, "highest": True, "rounds": 1,
                                                            "highest_last": 0.6, "highest_sum": 1.8}))
    got = ex.saved_accuracies(str(tmp_path / "train.log"), prefix, 1, ["synth_age"])
    assert got == {"synth_age": ex.Accuracy(0.63333, 0.05627)}  # the saved round, not the last one
    with pytest.raises(FaceKDError, match="no training meta"):
        ex.saved_accuracies(str(tmp_path / "train.log"), prefix, 2, ["synth_age"])


def test_network_size_of_a_saved_graph(tmp_path):
    import mxnet as mx

    x = mx.sym.Convolution(mx.sym.Variable("data"), kernel=(1, 1), stride=(16, 16), num_filter=2,
                           no_bias=True, name="conv")  # 3x112x112 -> 2x7x7
    x = mx.sym.FullyConnected(x, num_hidden=4, name="pre_fc1")
    x.save(str(tmp_path / "model-symbol.json"))
    params, ops = ex.network_size(str(tmp_path / "model"))
    assert params == 2 * 3 + 98 * 4 + 4
    assert ops == 2 * (2 * 7 * 7) * 3 + 2 * 4 * 98
    with pytest.raises(FaceKDError, match="not found"):
        ex.network_size(str(tmp_path / "other"))


# ----------------------------------------------------------------------------- tables and charts

def rows():
    acc = ex.Accuracy
    return [ex.ResultRow("teacher", "y2", "arcface", 2_128_000, 937_900_000,
                         {"synth_easy": acc(0.875, 0.04167), "synth_age": acc(0.7, 0.04888)}),
            ex.ResultRow("student", "y1", "margin_distillation", 1_193_000, 440_200_000,
                         {"synth_easy": acc(0.91, 0.02), "synth_age": acc(0.52, 0.0125)})]


def test_markdown_table():
    assert ex.markdown_table(rows(), ["synth_easy", "synth_age"]) == (
        "| method | network | loss | params | FLOPs | synth_easy | synth_age |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        "| teacher | y2 | arcface | 2.128 M | 937.9M | 87.50 ± 4.17 | 70.00 ± 4.89 |\n"
        "| student | y1 | margin_distillation | 1.193 M | 440.2M | 91.00 ± 2.00 | 52.00 ± 1.25 |\n")
    with pytest.raises(FaceKDError, match="'teacher' has no accuracy on synth_pose"):
        ex.markdown_table(rows(), ["synth_pose"])
    with pytest.raises(FaceKDError, match="no results"):
        ex.markdown_table([], ["synth_easy"])


def test_below_chance():
    assert ex.below_chance(rows(), ["synth_easy", "synth_age"]) == []
    assert ex.below_chance(rows(), ["synth_easy", "synth_age"], margin=0.05) == [("student", "synth_age", 0.52)]


def test_bar_chart_is_a_png(tmp_path):
    path = tmp_path / "bars.png"
    ex.plot_accuracy_bars(rows(), ["synth_easy", "synth_age"], str(path), title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["bars.png"]
    with pytest.raises(FaceKDError, match="does not exist"):
        ex.plot_accuracy_bars(rows(), ["synth_easy"], str(tmp_path / "no" / "b.png"))


def test_format_timings():
    assert ex.format_timings([("make_synthetic", 12.34), ("train teacher", 200.0)]) == (
        "  make_synthetic     12.3 s\n"
        "  train teacher     200.0 s\n"
        "  total             212.3 s")


# ----------------------------------------------------------------------------- recipe

def test_budget_flags_and_checks():
    b = ex.Budget(steps=250, batch=32, verbose=125)
    assert b.samples == 8000
    assert b.flags() == ["--max-steps", 250, "--per-batch-size", 32, "--verbose", 125, "--lr", 0.1,
                         "--lr-steps", "200"]
    assert ex.Budget(3, 30, 3, lr=0.01, lr_steps="100").flags()[-3:] == [0.01, "--lr-steps", "100"]
    with pytest.raises(FaceKDError, match="positive"):
        ex.Budget(steps=0, batch=32, verbose=1)


def test_loss_flags():
    assert ex.loss_flags("arcface") == ["--loss", "arcface", "--loss-s", 32.0, "--loss-m2", 0.3]
    assert ex.loss_flags("margin_distillation", "t/model,1") == [
        "--loss", "margin_distillation", "--loss-s", 32.0, "--Mmin", 0.2, "--Mmax", 0.4, "--teacher", "t/model,1"]
    assert ex.loss_flags("triplet_distillation_cos") == ["--loss", "triplet_distillation_cos", "--loss-s", 32.0]
    with pytest.raises(FaceKDError, match="needs the teacher"):
        ex.loss_flags("margin_base_with_T")
    with pytest.raises(FaceKDError, match="unknown method 'softmax'"):
        ex.loss_flags("softmax")


def test_every_method_is_a_registered_loss():
    from facekd.losses import LOSSES

    for method in ex.METHODS:
        assert LOSSES.get(method).name == method


def test_order_methods():
    assert ex.order_methods(["margin_distillation", " triplet_distillation_cos", "arcface"]) == [
        "arcface", "triplet_distillation_cos", "margin_distillation"]
    with pytest.raises(FaceKDError, match="fine-tune from the arcface student"):
        ex.order_methods(["triplet_distillation_L2"])
    with pytest.raises(FaceKDError, match="unknown softmax"):
        ex.order_methods(["arcface", "softmax"])
    with pytest.raises(FaceKDError, match="no method"):
        ex.order_methods(["", " "])


def test_triplet_budget_keeps_the_images():
    budget, bag = ex.triplet_budget(ex.Budget(steps=300, batch=32, verbose=300), lr=0.01, bag_batches=20)
    assert (budget.steps, budget.batch, budget.verbose, budget.lr, bag) == (320, 30, 320, 0.01, 600)
    assert budget.samples == 9600
    budget, bag = ex.triplet_budget(ex.Budget(steps=10, batch=2, verbose=5), lr=0.001, bag_batches=0)
    assert (budget.steps, budget.batch, bag) == (7, 3, 3)


def test_recipe_text_names_the_settings():
    student = ex.Budget(steps=160, batch=32, verbose=80)
    text = ex.recipe_text(student, ex.Budget(steps=200, batch=32, verbose=100))
    assert "s=32, m=0.3" in text and "Mmin/Mmax 0.2/0.4" in text and "s=64, m=0.5" in text
    assert text.endswith("teacher 200 steps x 32, student 160 steps x 32 images")
    assert ex.recipe_text(student).endswith("steps; student 160 steps x 32 images")


class RecordingRunner(ex.CommandRunner):
    """A CommandRunner that records the commands instead of running them (and can write their logs)."""

    def __init__(self, root, logs=None):
        self.root, self.timings, self.calls, self.logs = str(root), [], [], logs or {}

    def run(self, script, args, log_path, label=None):
        self.calls.append((script, [str(a) for a in args], self.rel(log_path), label))
        if script in self.logs:
            ex.write_text(log_path, self.logs[script])
        return 0.0


def test_workspace_builds_the_commands(tmp_path):
    runner = RecordingRunner(tmp_path)
    ws = ex.Workspace(runner, str(tmp_path / "out"), seed=3, frequent=5)
    ws.make_synthetic(10, 4, 6, 20)
    teacher = ws.train("y2", ex.loss_flags("arcface"), ex.Budget(10, 8, 5), extra=["--emb-size", 512], tag="t")
    ws.save_embeddings(teacher)
    student = ws.train("y1", ex.loss_flags("margin_distillation", ws.model_arg(teacher)), ex.Budget(6, 8, 3),
                       soft=True)
    assert teacher.prefix == str(tmp_path / "out" / "models" / "y2-arcface-synthetic" / "model")
    assert (student.network, student.loss, student.epoch) == ("y1", "margin_distillation", 1)
    assert student.log == str(tmp_path / "out" / "models" / "y1-margin_distillation-synthetic_soft" / "train.log")
    assert ws.model_arg(teacher) == "out/models/y2-arcface-synthetic/model,1"
    assert [c[0] for c in runner.calls] == ["data_prepare/make_synthetic.py", "recognition/train.py",
                                            "data_prepare/save_embeddings.py", "recognition/train.py"]
    assert runner.calls[0][1] == ["--out", "out/synthetic", "--identities", "10", "--images-per-identity", "4",
                                  "--val-identities", "6", "--pairs", "20", "--seed", "3",
                                  "--montage", "out/montage.png", "--overwrite"]
    assert runner.calls[1][1:] == (
        ["--network", "y2", "--emb-size", "512", "--loss", "arcface", "--loss-s", "32.0", "--loss-m2", "0.3",
         "--dataset", "synthetic", "--data-dir", "out/synthetic", "--models-root", "out/models",
         "--max-steps", "10", "--per-batch-size", "8", "--verbose", "5", "--lr", "0.1", "--lr-steps", "8",
         "--ckpt", "3", "--frequent", "5", "--seed", "3"], "out/logs/y2-arcface-synthetic.log", "t")
    assert runner.calls[2][1] == ["--model", "out/models/y2-arcface-synthetic/model,1", "--data-dir", "out/synthetic",
                                  "--out", "out/synthetic_soft", "--overwrite"]
    assert runner.calls[3][1][:12] == ["--network", "y1", "--loss", "margin_distillation", "--loss-s", "32.0",
                                       "--Mmin", "0.2", "--Mmax", "0.4", "--teacher",
                                       "out/models/y2-arcface-synthetic/model,1"]
    assert runner.calls[3][1][12:16] == ["--dataset", "synthetic_soft", "--data-dir", "out/synthetic_soft"]


def test_workspace_verify_reads_its_log(tmp_path):
    out = tmp_path / "out"
    rows = "".join(f"[{t}]out/models/{m}/model,1\tXNorm: 1.0\tAccuracy-Flip: 0.{a}+-0.01000\tVAL@FAR=0.001: 0+-0\n"
                   for m, a in (("a", 8), ("b", 7)) for t in ex.TARGETS)
    runner = RecordingRunner(tmp_path, logs={"recognition/eval/verification.py": rows})
    ws = ex.Workspace(runner, str(out))
    models = [ex.TrainedModel("y1", "arcface", str(out / "models" / m / "model"), 1, "") for m in "ab"]
    got = ws.verify(models, ex.TARGETS, str(out / "models" / "roc.png"), batch_size=16)
    assert runner.calls[0][1] == ["--data-dir", "out/synthetic", "--model", "out/models/a/model,1",
                                  "--model", "out/models/b/model,1", "--target", "synth_easy,synth_pose,synth_age",
                                  "--batch-size", "16", "--roc", "out/models/roc.png", "--overwrite"]
    assert got[models[0].model_arg]["synth_age"] == ex.Accuracy(0.8, 0.01)
    assert got[models[1].model_arg]["synth_easy"] == ex.Accuracy(0.7, 0.01)


# ----------------------------------------------------------------------------- seeds and spreads

def test_over_seeds_is_the_mean_and_sample_std_of_the_runs():
    runs = [{"a": ex.Accuracy(0.80, 0.04), "b": ex.Accuracy(0.60, 0.05)},
            {"a": ex.Accuracy(0.90, 0.03), "b": ex.Accuracy(0.60, 0.02)},
            {"a": ex.Accuracy(0.85, 0.02), "b": ex.Accuracy(0.63, 0.01)}]
    accuracy, per_target = ex.over_seeds(runs, ("a", "b"))
    # by hand: mean 0.85, deviations -0.05, 0.05, 0 -> variance 0.005 / 2 -> std 0.05 (the fold stds are ignored)
    assert accuracy["a"].acc == pytest.approx(0.85) and accuracy["a"].std == pytest.approx(0.05)
    assert accuracy["b"].acc == pytest.approx(0.61)
    assert accuracy["b"].std == pytest.approx((((0.01 ** 2) * 2 + 0.02 ** 2) / 2) ** 0.5)
    assert per_target == {"a": (0.80, 0.90, 0.85), "b": (0.60, 0.60, 0.63)}
    with pytest.raises(FaceKDError, match="at least 2 runs"):
        ex.over_seeds(runs[:1], ("a",))


def test_marks_only_differences_beyond_the_combined_spread():
    base = ex.ResultRow("arcface", "y1", "arcface", 1, 1, {"a": ex.Accuracy(0.80, 0.03), "b": ex.Accuracy(0.80, 0.03),
                                                          "c": ex.Accuracy(0.80, 0.03)})
    # combined spread sqrt(0.03^2 + 0.04^2) = 0.05
    row = ex.ResultRow("m", "y1", "m", 1, 1, {"a": ex.Accuracy(0.851, 0.04), "b": ex.Accuracy(0.849, 0.04),
                                             "c": ex.Accuracy(0.749, 0.04)})
    assert ex.mark_differences(row, base, ("a", "b", "c")) == {"a": ex.ABOVE, "c": ex.BELOW}
    table = ex.markdown_table([base, row], ("a", "b", "c"))
    assert "| 85.10 ± 4.00 ▲ | 84.90 ± 4.00 | 74.90 ± 4.00 ▼ |" in table


def test_bar_chart_with_seed_dots_is_a_png(tmp_path):
    row = ex.ResultRow("m", "y1", "m", 1, 1, {t: ex.Accuracy(0.8, 0.02) for t in ex.TARGETS},
                       runs={t: (0.78, 0.8, 0.82) for t in ex.TARGETS})
    path = ex.plot_accuracy_bars([row], ex.TARGETS, str(tmp_path / "bars.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
