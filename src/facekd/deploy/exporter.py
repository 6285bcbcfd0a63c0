"""``deploy/export.py``: training checkpoint -> slim checkpoint, ONNX (checked), optionally INT8 and a report.

Every input is checked before any work; the outputs are written into ``OUT.partial`` and
renamed to ``OUT`` only when everything passed (:func:`facekd.data.outputs.staged_output`),
so a failed parity check or an interrupted run leaves nothing under ``OUT``. The MXNet
reference embeddings come from the slim files as written, loaded back by MXNet's loader.
"""
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import FaceKDError
from . import parity as P
from .measure import Counts

TOOL = "export.py"
REPORT_MD = "deploy.md"
REPORT_JSON = "deploy.json"


@dataclass(frozen=True)
class ExportSettings:
    """A run of the export command, validated once (:func:`settings`)."""
    prefix: str
    epoch: int
    out: str
    data_dir: str
    num_images: int
    image_size: tuple
    batch_size: int
    int8: bool
    calib_data: str
    calib_images: int
    targets: tuple
    report: bool
    counts: Counts
    cpu_contexts: int
    ort_python: str
    overwrite: bool
    max_distance: float = P.MAX_COSINE_DISTANCE


def settings(args):
    """:class:`ExportSettings` of the parsed command line, every rule checked."""
    from ..checkpoints import parse_model_arg
    from ..embedder import parse_image_size

    prefix, epoch = parse_model_arg(args.model)
    for flag, value in (("--num-images", args.num_images), ("--batch-size", args.batch_size),
                        ("--calib-images", args.calib_images), ("--cpu-contexts", args.cpu_contexts)):
        if value < 1:
            raise FaceKDError(f"{flag} {value} is invalid: it must be an integer >= 1")
    if args.int8 and not args.calib_data:
        raise FaceKDError("--int8 needs --calib-data DIR, a RecordIO set of training images to calibrate on "
                          "(never the verification pairs)")
    if args.calib_data and not args.int8:
        raise FaceKDError("--calib-data is used only with --int8; add --int8 or drop --calib-data")
    targets = tuple(t.strip() for t in (args.target or "").split(",") if t.strip())
    report = bool(args.int8 or args.report)
    if targets and not report:
        raise FaceKDError("--target scores the exported models in the report; add --int8 or --report")
    counts = Counts(args.latency_runs, args.warmup_runs, args.throughput_batch, args.throughput_runs)
    return ExportSettings(prefix, epoch, args.out, args.data_dir, args.num_images, parse_image_size(args.image_size),
                          args.batch_size, bool(args.int8), args.calib_data or "", args.calib_images, targets, report,
                          counts, args.cpu_contexts, args.ort_python, bool(args.overwrite))


def check_inputs(s):
    """Before any work: the checkpoint files, the output place, the targets."""
    from ..checkpoints import checkpoint_paths
    from ..data.outputs import check_output_folder, check_separate, is_inside
    from ..evaluation.verification import target_path

    for path in checkpoint_paths(s.prefix, s.epoch):
        if not os.path.isfile(path):
            raise FaceKDError(f"--model: checkpoint file {path} not found; check the prefix and the epoch")
    check_output_folder(s.out, s.overwrite, TOOL, "--out")
    for folder, flag in ((s.data_dir, "--data-dir"), (s.calib_data, "--calib-data")):
        if folder:
            if not os.path.isdir(folder):
                raise FaceKDError(f"{flag} {folder} is not a folder; give a RecordIO dataset folder "
                                  "(train.rec, train.idx, property)")
            check_separate(folder, flag, s.out)
    model_dir = os.path.realpath(os.path.dirname(os.path.abspath(s.prefix)))
    if is_inside(model_dir, os.path.realpath(s.out)):
        raise FaceKDError(f"--out {s.out} contains the checkpoint {s.prefix},{s.epoch}; write the deployment "
                          "to a folder of its own (e.g. inside the run folder)")
    missing = [t for t in s.targets if not os.path.isfile(target_path(s.data_dir, t))]
    if missing:
        present = sorted(f[:-4] for f in os.listdir(s.data_dir) if f.endswith(".bin"))
        raise FaceKDError(f"--target: {', '.join(target_path(s.data_dir, t) for t in missing)} not found "
                          f"(present: {', '.join(present) or 'no .bin files'})")


def nchw(images):
    """float32 (N, 3, H, W) of uint8 RGB (N, H, W, 3)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


@dataclass
class Runtime:
    """One column of the report: its measurements, the embedder that scores it, and how to time it."""
    column: object  # facekd.deploy.report.Column
    embedder: object
    latency_ms: Callable  # (one image NCHW, runs, warmup) -> median ms on one thread
    images_per_second: Callable  # (batch NCHW, runs, warmup, threads) -> images/s


def mxnet_runtime(column, embedder, prefix, epoch):
    from .mxnet_timing import measure_mxnet

    return Runtime(column, embedder,
                   lambda one, runs, warmup: measure_mxnet(prefix, epoch, one, 1, runs, warmup)["ms"],
                   lambda batch, runs, warmup, threads: measure_mxnet(prefix, epoch, batch, threads, runs,
                                                                      warmup)["images_per_second"])


def onnx_runtime(column, embedder, worker, path):
    return Runtime(column, embedder, lambda one, runs, warmup: worker.latency_ms(path, one, runs, warmup),
                   lambda batch, runs, warmup, threads: worker.images_per_second(path, batch, runs, warmup, threads))


def run(s, say=print):
    """Export ``s.prefix,s.epoch`` into ``s.out``; returns the report's columns."""
    from ..checkpoints import load_checkpoint, symbol_path
    from ..data.outputs import staged_output
    from ..evaluation.verification import load_target, target_path
    from .faces import sample_record_images
    from .ort_client import OrtWorker
    from .slim import slim

    check_inputs(s)
    with OrtWorker(s.ort_python) as worker:
        v = worker.versions
        say(f"onnxruntime {v['onnxruntime']} (onnx {v['onnx']}, numpy {v['numpy']}) in {worker.python}")
        symbol, arg_params, aux_params = load_checkpoint(s.prefix, s.epoch)
        model = slim(symbol, arg_params, aux_params, name=symbol_path(s.prefix))
        del arg_params, aux_params  # the class centres can be large
        images = sample_record_images(s.data_dir, s.num_images, "--data-dir", s.image_size)
        calibration = (sample_record_images(s.calib_data, s.calib_images, "--calib-data", s.image_size)
                       if s.int8 else None)
        targets = [load_target(target_path(s.data_dir, t), s.image_size, t) for t in s.targets]
        with staged_output(s.out, s.overwrite, "--out", TOOL, "deployment") as folder:
            runtimes, expected, info = export_checked(s, model, folder, images, worker, say)
            if s.int8:
                runtimes.append(quantized(s, folder, calibration, images, expected, worker, say))
            if s.report:
                measure(s, runtimes, images, targets, say)
                say("\n" + "\n".join(write_deploy_report(s, folder, [r.column for r in runtimes], worker, info))
                    + "\n")
    say(f"wrote {s.out}: " + ", ".join(sorted(f for f in os.listdir(s.out) if not f.startswith("."))))
    return [r.column for r in runtimes]


def export_checked(s, model, folder, images, worker, say):
    """Slim checkpoint and model.onnx in ``folder``, parity checked; ([MXNet, ONNX float] runtimes,
    MXNet's embeddings of ``images``, the export's info)."""
    from ..checkpoints import params_path
    from ..embedder import Embedder
    from ..training.contexts import get_contexts
    from .onnx_export import FLOAT_ONNX, export_onnx
    from .ort_client import OnnxEmbedder
    from .report import Column, format_size
    from .slim import SLIM_EPOCH, SLIM_PREFIX, checkpoint_bytes, write_slim

    sym_file, params_file = write_slim(model, folder)
    prefix = os.path.join(folder, SLIM_PREFIX)
    size = checkpoint_bytes(prefix, SLIM_EPOCH)
    say(f"slim checkpoint: {format_size(size)} ({len(model.names)} arrays cut at fc1_output), "
        f"training checkpoint {s.prefix},{s.epoch}: {format_size(checkpoint_bytes(s.prefix, s.epoch))}")
    reference = Embedder.from_checkpoint(prefix, SLIM_EPOCH, get_contexts(s.cpu_contexts), s.batch_size,
                                         s.image_size)  # the files as written, through MXNet's loader
    expected = reference.embed(images)
    path = os.path.join(folder, FLOAT_ONNX)
    info = export_onnx(model, path, s.image_size, params_path(s.prefix, s.epoch))
    say(f"ONNX: {FLOAT_ONNX} {format_size(os.path.getsize(path))}, repairs: {info.metadata['facekd.repairs']}")
    onnx_model = OnnxEmbedder(worker, path, s.batch_size, s.image_size)
    parity = P.measure(expected, onnx_model.embed(images))
    say(f"parity: ONNX (onnxruntime) against MXNet on {parity.images} images of {s.data_dir}: max cosine distance "
        f"{parity.max:.3g}, mean {parity.mean:.3g} (limit {s.max_distance:g})")
    P.check(parity, f"{FLOAT_ONNX} (onnxruntime)", s.max_distance)
    mxnet = Column("MXNet", [os.path.basename(params_file), os.path.basename(sym_file)], size)
    float_column = Column("ONNX float", [FLOAT_ONNX], os.path.getsize(path), parity.as_dict())
    return ([mxnet_runtime(mxnet, reference, prefix, SLIM_EPOCH),
             onnx_runtime(float_column, onnx_model, worker, path)], expected, info)


def quantized(s, folder, calibration, images, expected, worker, say):
    """model-int8.onnx in ``folder`` and its runtime; its distance to MXNet is measured, not gated."""
    from .onnx_export import FLOAT_ONNX, INPUT_NAME, INT8_ONNX
    from .ort_client import OnnxEmbedder
    from .report import Column, format_size

    path = os.path.join(folder, INT8_ONNX)
    method = worker.quantize(os.path.join(folder, FLOAT_ONNX), path, nchw(calibration), INPUT_NAME)
    embedder = OnnxEmbedder(worker, path, s.batch_size, s.image_size)
    parity = P.measure(expected, embedder.embed(images))
    say(f"INT8: {INT8_ONNX} {format_size(os.path.getsize(path))} ({method} of {s.calib_data}); cosine distance "
        f"to MXNet: max {parity.max:.3g}, mean {parity.mean:.3g}")
    return onnx_runtime(Column("ONNX INT8", [INT8_ONNX], os.path.getsize(path), parity.as_dict()), embedder,
                        worker, path)


def measure(s, runtimes, images, targets, say):
    """Latency, throughput and Accuracy-Flip of every runtime, into its column."""
    from tqdm import tqdm

    from ..evaluation.verification import evaluate
    from ..runtime import physical_cores

    c = s.counts
    one = nchw(images[:1])
    batch = nchw(np.resize(images, (c.throughput_batch,) + images.shape[1:]))  # repeated when fewer images
    cores = physical_cores()
    say(f"timing: latency median of {c.latency_runs} single images on 1 thread, throughput {c.throughput_runs} "
        f"batches of {c.throughput_batch} on {cores} threads, each after {c.warmup_runs} warm-up runs")
    for r in tqdm(runtimes, desc="timing", unit="model", leave=False):
        r.column.latency_ms = r.latency_ms(one, c.latency_runs, c.warmup_runs)
        r.column.images_per_second = r.images_per_second(batch, c.throughput_runs, c.warmup_runs, cores)
    for vset in targets:
        for r in runtimes:
            result = evaluate(r.embedder, vset, progress=True)
            r.column.accuracy[vset.name] = [result.acc, result.std]
            say(f"[{vset.name}]{r.column.name}\tAccuracy-Flip: {result.acc:1.5f}+-{result.std:1.5f}")


def write_deploy_report(s, folder, columns, worker, info):
    """``deploy.md`` and ``deploy.json`` in ``folder``; returns the table's lines."""
    from ..runtime import physical_cores
    from .report import markdown_table, write_report

    parity_images = next(c.parity["images"] for c in columns if c.parity)
    table = markdown_table(columns, s.counts, physical_cores(), parity_images)
    facts = {"model": f"{s.prefix},{s.epoch}", "data_dir": s.data_dir, "calib_data": s.calib_data,
             "calib_images": s.calib_images if s.int8 else 0, "targets": list(s.targets),
             "counts": s.counts.as_dict(), "cores": physical_cores(), "runtime": worker.versions,
             "metadata": info.metadata}
    notes = f"Parity and timing images: {parity_images} of {s.data_dir}."
    if s.int8:
        notes += f" INT8 calibration: {s.calib_images} images of {s.calib_data}."
    write_report(os.path.join(folder, REPORT_MD), os.path.join(folder, REPORT_JSON), columns, facts,
                 [f"# Deployment of {s.prefix},{s.epoch}", "", *table, "", notes])
    return table
