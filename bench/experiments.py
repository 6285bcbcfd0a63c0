"""Driver of the end-to-end experiments (bench/demo.py, bench/compare_methods.py).

It runs the project's real commands (``recognition/train.py``, ``data_prepare/...``,
``recognition/eval/...``) as subprocesses, each echoed as a shell line and its
output teed to a log file, so that a reader sees exactly what to run on real data.
It then collects verification accuracies, parameter and FLOP counts, and renders
them as a markdown table and a PNG bar chart.
"""
import codecs
import collections
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from facekd.atomic import atomic_path
from facekd.errors import FaceKDError
from facekd.evaluation.verification import parse_verification_rows

TARGETS = ("synth_easy", "synth_pose", "synth_age")
CHANCE = 0.5


# ----------------------------------------------------------------------------- commands

def _clean_line(line):
    """What a terminal would show of a line rewritten with carriage returns (progress bars)."""
    segments = [s for s in line.split("\r") if s.strip()]
    return segments[-1].rstrip() if segments else ""


class LineCleaner:
    """Splits streamed text into complete lines, each as a terminal would finally show it."""

    def __init__(self):
        self._partial = ""

    def feed(self, text):
        """Complete lines in ``text`` (after what was fed before), cleaned of progress-bar rewrites."""
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        return [_clean_line(p) for p in parts]

    def flush(self):
        """The unterminated last line, if it shows anything."""
        rest, self._partial = _clean_line(self._partial), ""
        return [rest] if rest else []


def write_text(path, text):
    """Write ``text`` under a temporary name, then rename it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return path



def write_results(out, text, rows, title, runner):
    """A comparison's ``results.md`` (``text``) and ``results.png`` (bars of ``rows``) in ``out``, both printed."""
    md = write_text(os.path.join(out, "results.md"), text)
    png = plot_accuracy_bars(rows, TARGETS, os.path.join(out, "results.png"), title=title)
    print("\n" + text)
    print(f"written {runner.rel(md)} and {runner.rel(png)}")

class CommandRunner:
    """Runs the repository's scripts with this interpreter from the repository root.

    Each command is echoed as ``$ python -u <script> <args>``; its stdout and stderr
    are streamed to ``console`` (as they come on a terminal, else line by line) and
    written, cleaned of progress-bar rewrites, to a log file. A failing command raises FaceKDError naming
    its log. ``timings`` keeps ``(label, seconds)`` of every command run.
    """

    def __init__(self, root, console=None):
        self.root = os.path.abspath(root)
        self.console = console or sys.stdout
        self.timings = []
        if not os.path.isfile(os.path.join(self.root, "recognition", "train.py")):
            raise FaceKDError(f"{self.root} is not a facekd repository (no recognition/train.py); "
                              "run the bench scripts from a clone of the repository")

    def rel(self, path):
        """``path`` relative to the root when it lies inside it (for readable command lines)."""
        path = os.path.abspath(path)
        inside = os.path.commonpath([path, self.root]) == self.root
        return os.path.relpath(path, self.root) if inside else path

    def display(self, script, args):
        return shlex.join(["python", "-u", script] + [str(a) for a in args])

    def run(self, script, args, log_path, label=None):
        """Run ``python -u script args`` from the root; returns the wall time in seconds."""
        if not os.path.isfile(os.path.join(self.root, script)):
            raise FaceKDError(f"script {script} not found under {self.root}")
        args = [str(a) for a in args]
        shown = self.display(script, args)
        self._say(f"\n$ {shown}\n")
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cleaner, tail = LineCleaner(), collections.deque(maxlen=3)
        raw = hasattr(self.console, "isatty") and self.console.isatty()
        start = time.perf_counter()
        returncode = None
        # the full record of the run, also when it failed
        with atomic_path(log_path, keep_partial=True) as tmp, open(tmp, "w") as log:
            log.write(f"$ {shown}\n")
            proc = subprocess.Popen([sys.executable, "-u", script] + args, cwd=self.root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                returncode = self._pump(proc, log, cleaner, tail, raw)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        seconds = time.perf_counter() - start
        self.timings.append((label or script, seconds))
        if returncode != 0:
            last = next((line for line in reversed(tail) if line.strip()), "no output")
            raise FaceKDError(f"{script} failed (exit status {returncode}): {last.strip()} "
                              f"(full log: {self.rel(log_path)})")
        return seconds

    def _pump(self, proc, log, cleaner, tail, raw):
        """Stream the child's output until it ends; returns its exit status."""
        def emit(lines):
            for line in lines:
                log.write(line + "\n")
                tail.append(line)
                if not raw:
                    self._say(line + "\n")

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            chunk = proc.stdout.read1(1 << 16)
            if not chunk:
                break
            text = decoder.decode(chunk)
            if raw:  # a terminal shows the progress bars as they move
                self._say(text)
            emit(cleaner.feed(text))
        emit(cleaner.feed(decoder.decode(b"", final=True)) + cleaner.flush())
        return proc.wait()

    def _say(self, text):
        self.console.write(text)
        self.console.flush()


# ----------------------------------------------------------------------------- results

@dataclass
class Accuracy:
    """Accuracy-Flip of one target: mean and std over the 10 folds (fractions)."""
    acc: float
    std: float


def read_verification_log(path, models, targets):
    """{model: {target: Accuracy}} from a verification.py log; every model/target must be there."""
    with open(path, errors="replace") as f:
        rows = parse_verification_rows(f)
    found = {}
    for row in rows:
        found.setdefault(row.model, {})[row.target] = Accuracy(row.acc, row.std)
    for model in models:
        missing = [t for t in targets if t not in found.get(model, {})]
        if missing:
            raise FaceKDError(f"{path}: no Accuracy-Flip row of {model} on {', '.join(missing)}")
    return {m: {t: found[m][t] for t in targets} for m in models}


def accuracies_at_step(log, step, targets):
    """{target: Accuracy} of the verification round at ``step`` of a parsed training log."""
    out = {}
    for target in targets:
        points = [p for p in log.accuracy.get(target, []) if p[0] == step]
        if not points:
            raise FaceKDError(f"the training log has no [{target}][{step}]Accuracy-Flip line")
        _, acc, std = points[-1]
        out[target] = Accuracy(acc, std)
    return out


def saved_accuracies(log_path, prefix, epoch, targets):
    """{target: Accuracy} of the checkpoint ``prefix,epoch``: its verification round in the training log.

    The step of the round that saved it comes from the meta file beside the checkpoint.
    """
    from facekd.evaluation.plots import read_training_log
    from facekd.training.checkpoint import read_checkpoint_meta

    return accuracies_at_step(read_training_log(log_path), read_checkpoint_meta(prefix, epoch)["step"], targets)


def network_size(prefix, mode="conv_fc"):
    """(parameters, FLOPs) of the deployable graph ``<prefix>-symbol.json`` (fc7 excluded)."""
    import mxnet as mx

    from facekd.symbols import flops

    path = f"{prefix}-symbol.json"
    if not os.path.isfile(path):
        raise FaceKDError(f"checkpoint symbol {path} not found")
    symbol = mx.sym.load(path)
    return flops.count_params(symbol), flops.count_flops(symbol, mode=mode)


@dataclass
class ResultRow:
    """One line of a results table: a trained model and its accuracy per target.

    A row of several seeds holds in ``accuracy`` the mean and the std over the seeds, in ``runs``
    each seed's accuracy (target -> tuple) and in ``marks`` the sign of its difference to a base row
    where it exceeds their combined spread (:func:`mark_differences`)."""
    method: str
    network: str
    loss: str
    params: int
    flops: int
    accuracy: dict = field(default_factory=dict)  # target -> Accuracy
    runs: dict = field(default_factory=dict)  # target -> (accuracy of each seed, ...)
    marks: dict = field(default_factory=dict)  # target -> ABOVE / BELOW


ABOVE, BELOW = "▲", "▼"


def over_seeds(per_seed, targets):
    """(target -> Accuracy(mean, std), target -> runs) of several runs' {target: Accuracy}.

    The std is the sample standard deviation (ddof 1) of the runs' accuracies (each the mean of
    its folds): the spread a rerun with another seed shows."""
    if len(per_seed) < 2:
        raise FaceKDError(f"a spread over seeds needs at least 2 runs, got {len(per_seed)}")
    runs = {t: tuple(float(run[t].acc) for run in per_seed) for t in targets}
    return {t: Accuracy(float(np.mean(v)), float(np.std(v, ddof=1))) for t, v in runs.items()}, runs


def mark_differences(row, base, targets):
    """Set ``row.marks``: ABOVE / BELOW where ``row`` differs from ``base`` by more than their combined
    spread ``sqrt(std_row^2 + std_base^2)`` (the std of the difference of two independent runs)."""
    row.marks = {}
    for t in targets:
        a, b = row.accuracy[t], base.accuracy[t]
        delta = a.acc - b.acc
        if abs(delta) > float(np.hypot(a.std, b.std)):
            row.marks[t] = ABOVE if delta > 0 else BELOW
    return row.marks


def format_accuracy(a, mark=""):
    """Percent with its std: ``91.50 ± 2.10``, and the mark of :func:`mark_differences` if any."""
    return f"{100 * a.acc:.2f} ± {100 * a.std:.2f}" + (f" {mark}" if mark else "")


def markdown_table(rows, targets):
    """The seed-style table: method, network, loss, params, FLOPs, then Accuracy-Flip (%) per target."""
    from facekd.symbols.flops import format_flops

    if not rows:
        raise FaceKDError("no results to tabulate")
    header = ["method", "network", "loss", "params", "FLOPs"] + list(targets)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        missing = [t for t in targets if t not in r.accuracy]
        if missing:
            raise FaceKDError(f"result {r.method!r} has no accuracy on {', '.join(missing)}")
        cells = [r.method, r.network, r.loss, f"{r.params / 1e6:.3f} M", format_flops(r.flops)]
        cells += [format_accuracy(r.accuracy[t], r.marks.get(t, "")) for t in targets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def below_chance(rows, targets, margin=0.0):
    """[(method, target, acc)] of the results not above chance (0.5) by more than ``margin``."""
    return [(r.method, t, r.accuracy[t].acc) for r in rows for t in targets
            if r.accuracy[t].acc <= CHANCE + margin]


def plot_accuracy_bars(rows, targets, path, title="verification accuracy"):
    """Grouped bar chart (PNG): one group per target, one bar per result, fold std as error bars."""
    from facekd.evaluation.plots import _pyplot, _save, check_parent_folder

    if not rows:
        raise FaceKDError(f"no results to plot into {path}")
    check_parent_folder(path)
    plt = _pyplot()
    n = len(rows)
    width = 0.8 / n
    x = np.arange(len(targets))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 0.45 * n * len(targets)), 4.5))
    for i, r in enumerate(rows):
        acc = [100 * r.accuracy[t].acc for t in targets]
        std = [100 * r.accuracy[t].std for t in targets]
        centre = x - 0.4 + width * (i + 0.5)
        ax.bar(centre, acc, width, yerr=std, capsize=2, label=r.method)
        for j, t in enumerate(targets):  # each seed's run as a dot on its bar
            runs = [100 * v for v in r.runs.get(t, ())]
            ax.plot([centre[j]] * len(runs), runs, "k.", markersize=3)
    ax.axhline(100 * CHANCE, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x)
    ax.set_xticklabels(targets)
    lowest = min([100 * r.accuracy[t].acc for r in rows for t in targets] +
                 [100 * v for r in rows for t in targets for v in r.runs.get(t, ())])
    ax.set_ylim(min(45.0, lowest - 5.0), 100.0)
    ax.set_ylabel("Accuracy-Flip (%)" + ("; dots: each seed" if any(r.runs for r in rows) else ""))
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(n + 1, 4))
    return _save(fig, path)


def format_timings(timings):
    """``label  123.4 s`` lines and a total, for the end of a run."""
    width = max((len(label) for label, _ in timings), default=5)
    lines = [f"  {label:<{width}}  {seconds:7.1f} s" for label, seconds in timings]
    lines.append(f"  {'total':<{width}}  {sum(s for _, s in timings):7.1f} s")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the synthetic recipe

@dataclass
class Budget:
    """Training budget of one run: steps of ``batch`` images, verification every ``verbose`` steps."""
    steps: int
    batch: int
    verbose: int
    lr: float = 0.1
    lr_steps: str = ""  # default: one lr step (x0.1) at 80% of the steps

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.verbose < 1:
            raise FaceKDError(f"budget needs positive steps, batch and verbose; got {self.steps}, "
                              f"{self.batch}, {self.verbose}")

    @property
    def samples(self):
        return self.steps * self.batch

    def flags(self):
        lr_steps = self.lr_steps or str(max(1, int(round(0.8 * self.steps))))
        return ["--max-steps", self.steps, "--per-batch-size", self.batch, "--verbose", self.verbose,
                "--lr", self.lr, "--lr-steps", lr_steps]


# The synthetic set of an experiment script, and its tiny --quick sizes.
QUICK_DATA = dict(identities=40, images_per_identity=10, val_identities=20, pairs=100, target_images=0)

# The comparison's set (make demo uses the same, so that both share one cached teacher): 200 training
# identities x 20 images; targets of 2,000 pairs from 100 held-out identities, drawn from 6 images per
# identity and profile (LFW-like reuse; the verifier embeds each distinct image once).
COMPARISON_PAIRS = 2000
COMPARISON_TARGET_IMAGES = 6

# The teacher of the synthetic experiments: y2 (about twice the student's FLOPs) with relu (MXNet 1.9's
# CPU PReLU makes y2 train about 10x slower) and a 512-d embedding like the student's (the embedding
# and centre methods need equal dimensions), trained long enough to be ahead of every student.
TEACHER_NET = "y2"
TEACHER_NETWORK = ["--net-act", "relu", "--emb-size", "512"]
TEACHER_STEPS = 800


def teacher_budget(steps, batch):
    """The teacher's budget: one verification round, at the end (the same for every script, so cacheable)."""
    return Budget(steps=steps, batch=batch, verbose=steps)


def add_data_arguments(parser, pairs, target_images=0):
    """--identities, --images-per-identity, --val-identities, --pairs, --target-images and --seed of the set."""
    parser.add_argument("--identities", type=int, default=200, help="training identities")
    parser.add_argument("--images-per-identity", type=int, default=20)
    parser.add_argument("--val-identities", type=int, default=100, help="held-out identities of the targets")
    parser.add_argument("--pairs", type=int, default=pairs, help="pairs per verification target")
    parser.add_argument("--target-images", type=int, default=target_images,
                        help="images per held-out identity and profile that the pairs draw from (0: two "
                             "fresh images per pair)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic set and the teacher")


def add_seeds_argument(parser, default="0,1,2"):
    """--seeds: the seeds every trained model of a comparison is run with (the data stay fixed)."""
    parser.add_argument("--seeds", default=default, help="comma-separated run seeds (at least 2)")


def parse_seeds(text):
    """The --seeds list: distinct non-negative integers, at least 2."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise FaceKDError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise FaceKDError(f"--seeds {text!r}: give at least 2 distinct non-negative seeds (a spread needs them)")
    return seeds


def apply_quick_data(args):
    """Shrink the synthetic set of ``args`` to the --quick sizes."""
    for name, value in QUICK_DATA.items():
        setattr(args, name, value)


# Softer margin settings than the published s=64, m=0.5, which stall for minutes from
# scratch on the small synthetic set (docs/synthetic.md). Every method gets the same scale
# and margin so that the comparison is fair.
SCALE = 32.0
MARGIN = 0.3
DISTILLATION_MARGINS = (0.2, 0.4)  # margin_distillation's Mmin, Mmax around the same 0.3
TRIPLET_LR = 0.01

METHOD_TITLES = {
    "arcface": "y1 arcface (no teacher)",
    "angular_distillation": "angular distillation",
    "triplet_distillation_L2": "triplet distillation L2",
    "triplet_distillation_cos": "triplet distillation cos",
    "margin_base_with_T": "margin based with T",
    "margin_distillation": "MarginDistillation",
    "template_kd": "template KD (PocketNet)",
}
METHODS = tuple(METHOD_TITLES)
TRIPLET_METHODS = ("triplet_distillation_L2", "triplet_distillation_cos")


def loss_flags(loss, teacher=None):
    """Flags of recognition/train.py that set ``loss`` to the synthetic recipe's scale and margins."""
    if loss not in METHOD_TITLES:
        raise FaceKDError(f"unknown method {loss!r}; valid: {', '.join(METHODS)}")
    flags = ["--loss", loss, "--loss-s", SCALE]
    if loss in ("arcface", "angular_distillation", "margin_base_with_T", "template_kd"):
        flags += ["--loss-m2", MARGIN]
    if loss == "margin_distillation":
        flags += ["--Mmin", DISTILLATION_MARGINS[0], "--Mmax", DISTILLATION_MARGINS[1]]
    if loss in ("margin_base_with_T", "margin_distillation"):
        if not teacher:
            raise FaceKDError(f"{loss} needs the teacher checkpoint (its fc7 class centres)")
        flags += ["--teacher", teacher]
    return flags


def order_methods(names):
    """``names`` (method names) validated and in run order: arcface first, as the triplet runs start from it."""
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise FaceKDError("--methods: no method given; valid: " + ", ".join(METHODS))
    unknown = [n for n in names if n not in METHOD_TITLES]
    if unknown:
        raise FaceKDError(f"--methods: unknown {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    if any(n in TRIPLET_METHODS for n in names) and "arcface" not in names:
        raise FaceKDError("--methods: the triplet methods fine-tune from the arcface student; add arcface")
    return [m for m in METHODS if m in names]


def triplet_budget(budget, lr, bag_batches):
    """(Budget, bag size): ``budget``'s images in batches of a multiple of 3 (A | P | N), one round.

    The bag holds ``bag_batches`` batches of images (a multiple of the batch, as the iterator needs).
    """
    batch = max(3, budget.batch - budget.batch % 3)
    steps = max(1, round(budget.samples / batch))
    return Budget(steps=steps, batch=batch, verbose=steps, lr=lr), batch * max(1, bag_batches)


def recipe_text(student_budget, teacher_budget=None):
    """One paragraph saying which settings the runs used (printed by the demo, kept in results)."""
    teacher = f"teacher {teacher_budget.steps} steps x {teacher_budget.batch}, " if teacher_budget else ""
    return (f"settings: margin losses at s={SCALE:g}, m={MARGIN:g} (margin_distillation Mmin/Mmax "
            f"{DISTILLATION_MARGINS[0]:g}/{DISTILLATION_MARGINS[1]:g}) instead of the published s=64, m=0.5, "
            f"which stall from scratch on this small set; SGD lr {student_budget.lr:g} x0.1 at 80% of the "
            f"steps; {teacher}student {student_budget.steps} steps x {student_budget.batch} images")


@dataclass
class TrainedModel:
    """A finished training run: its checkpoint ``prefix,epoch`` and its log."""
    network: str
    loss: str
    prefix: str
    epoch: int
    log: str

    @property
    def model_arg(self):
        return f"{self.prefix},{self.epoch}"


class Workspace:
    """The stages of the job, each one real command, with outputs under one folder.

    Layout: ``<out>/synthetic`` (hard labels), ``<out>/synthetic_soft`` (teacher embeddings),
    ``<out>/models/<network>-<loss>-<dataset>/`` (checkpoint, ``train.log``, ``training.png``),
    ``<out>/logs`` (data preparation, training console and evaluation logs).
    """

    def __init__(self, runner, out, seed=0, frequent=20):
        self.runner, self.out, self.seed, self.frequent = runner, os.path.abspath(out), seed, frequent
        self.data_dir = os.path.join(self.out, "synthetic")
        self.soft_dir = os.path.join(self.out, "synthetic_soft")
        self.models_root = os.path.join(self.out, "models")
        self.logs = os.path.join(self.out, "logs")
        self.train_set = None  # the parameters of the training images, once make_synthetic ran

    def _r(self, path):
        return self.runner.rel(path)

    def seed_space(self, seed):
        """A Workspace of one run seed: this one's data, its own models and logs folders (``seed<N>``)."""
        space = Workspace(self.runner, self.out, seed=seed, frequent=self.frequent)
        space.data_dir, space.soft_dir, space.train_set = self.data_dir, self.soft_dir, self.train_set
        space.models_root = os.path.join(self.models_root, f"seed{seed}")
        space.logs = os.path.join(self.logs, f"seed{seed}")
        return space

    def model_arg(self, model):
        """``prefix,epoch`` of a TrainedModel as the commands show it (relative to the root)."""
        return f"{self._r(model.prefix)},{model.epoch}"

    def make_synthetic(self, identities, images_per_identity, val_identities, pairs, target_images=0):
        """data_prepare/make_synthetic.py into ``data_dir``; ``target_images`` > 0 draws the pairs from a pool."""
        pool = ["--target-images", target_images] if target_images else []
        self.runner.run("data_prepare/make_synthetic.py", [
            "--out", self._r(self.data_dir), "--identities", identities,
            "--images-per-identity", images_per_identity, "--val-identities", val_identities,
            "--pairs", pairs] + pool + ["--seed", self.seed,
                                        "--montage", self._r(os.path.join(self.out, "montage.png")),
                                        "--overwrite"], os.path.join(self.logs, "make_synthetic.log"),
            label="make_synthetic")
        # what train.rec is a function of (the targets are drawn from other streams)
        self.train_set = {"identities": int(identities), "images_per_identity": int(images_per_identity),
                          "seed": int(self.seed)}

    def _train_command(self, network, loss_args, budget, soft, extra):
        """(train.py arguments, run folder, console log) of one training run."""
        loss = loss_args[loss_args.index("--loss") + 1]
        dataset = "synthetic_soft" if soft else "synthetic"
        folder = os.path.join(self.models_root, f"{network}-{loss}-{dataset}")
        console = os.path.join(self.logs, f"{network}-{loss}-{dataset}.log")  # stdout + stderr as printed
        args = ["--network", network] + list(extra) + list(loss_args) + [
            "--dataset", dataset, "--data-dir", self._r(self.soft_dir if soft else self.data_dir),
            "--models-root", self._r(self.models_root)] + budget.flags() + [
            "--ckpt", 3, "--frequent", self.frequent, "--seed", self.seed]
        return args, folder, console

    @staticmethod
    def _trained(network, loss_args, folder):
        # the trainer's own train.log beside the checkpoint (timestamped lines)
        loss = loss_args[loss_args.index("--loss") + 1]
        return TrainedModel(network, loss, os.path.join(folder, "model"), 1, os.path.join(folder, "train.log"))

    def train(self, network, loss_args, budget, soft=False, extra=(), tag=None):
        """Run recognition/train.py; ``loss_args`` from :func:`loss_flags`. Returns the TrainedModel."""
        args, folder, console = self._train_command(network, loss_args, budget, soft, extra)
        self.runner.run("recognition/train.py", args, console, label=tag or f"train {network} {self._trained(network, loss_args, folder).loss}")
        return self._trained(network, loss_args, folder)

    def train_cached(self, cache, network, loss_args, budget, extra=(), tag="train teacher"):
        """:meth:`train` on the hard-label set through a :class:`teacher_cache.TeacherCache` (None: no cache).

        Returns (TrainedModel, record): the record says when the cached run was trained and in how long;
        it is None when this call trained it and no cache is used."""
        from teacher_cache import cache_key  # bench/teacher_cache.py

        args, folder, console = self._train_command(network, loss_args, budget, False, extra)
        model = self._trained(network, loss_args, folder)
        if cache is None:
            self.runner.run("recognition/train.py", args, console, label=tag)
            return model, None
        if self.train_set is None:
            raise FaceKDError("a cached teacher needs the synthetic set made first (make_synthetic)")
        key = cache_key(args, self.train_set)
        if cache.lookup(key) is not None:
            start = time.perf_counter()
            record = dict(cache.restore(key, folder), restored=True)
            self.runner.timings.append((f"{tag} (cached)", time.perf_counter() - start))
            print(f"\n$ {self.runner.display('recognition/train.py', args)}\n"
                  f"teacher cache: this command's run was trained {record['date']} in {record['seconds']:.0f} s; "
                  f"copied from {cache.folder(key)} (delete it, or pass --no-cache, to train again)")
            return model, record
        seconds = self.runner.run("recognition/train.py", args, console, label=tag)
        record = dict(cache.store(key, folder, self.runner.display("recognition/train.py", args), seconds),
                      restored=False)
        print(f"teacher cache: stored as {cache.folder(key)}")
        return model, record

    def save_embeddings(self, teacher):
        self.runner.run("data_prepare/save_embeddings.py", [
            "--model", self.model_arg(teacher), "--data-dir", self._r(self.data_dir),
            "--out", self._r(self.soft_dir), "--overwrite"],
            os.path.join(self.logs, "save_embeddings.log"), label="save_embeddings (streaming)")

    def verify(self, models, targets, roc_png, batch_size=64):
        """recognition/eval/verification.py on every model; {model_arg: {target: Accuracy}}."""
        args = ["--data-dir", self._r(self.data_dir)]
        for m in models:
            args += ["--model", self.model_arg(m)]
        args += ["--target", ",".join(targets), "--batch-size", batch_size, "--roc", self._r(roc_png),
                 "--overwrite"]
        log = os.path.join(self.logs, "verification.log")
        self.runner.run("recognition/eval/verification.py", args, log, label="verification")
        found = read_verification_log(log, [self.model_arg(m) for m in models], targets)
        return {m.model_arg: found[self.model_arg(m)] for m in models}

    def plot_training(self, model):
        png = os.path.join(os.path.dirname(model.prefix), "training.png")
        self.runner.run("recognition/eval/plot_training.py", [self._r(model.log), self._r(png), "--overwrite"],
                        os.path.join(self.logs, f"plot_{model.network}-{model.loss}.log"),
                        label=f"plot {model.network} {model.loss}")
        return png


def result_row(method, model, accuracy, mode="conv_fc"):
    """A ResultRow of ``model`` with its sizes counted from the checkpoint graph (FLOPs ``mode``)."""
    params, ops = network_size(model.prefix, mode=mode)
    return ResultRow(method, model.network, model.loss, params, ops, accuracy)


def seeded_row(method, model, per_seed, mode="conv_fc"):
    """The ResultRow of one method run once per seed: ``per_seed`` holds each run's {target: Accuracy};
    the sizes are ``model``'s (every run has the same network)."""
    accuracy, runs = over_seeds(per_seed, TARGETS)
    row = result_row(method, model, accuracy, mode=mode)
    row.runs = runs
    return row
