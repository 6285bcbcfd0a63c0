"""Export a training checkpoint for devices: slim MXNet checkpoint, ONNX checked against MXNet, INT8.

    python deploy/export.py --model ./models/y1-arcface-emore/model,1 --out ./models/y1-arcface-emore/deploy \
        --data-dir ../datasets/faces_emore [--int8 --calib-data ../datasets/faces_emore --target lfw,cfp_fp,agedb_30]

Writes OUT/model-symbol.json + OUT/model-0000.params (cut at fc1_output, no fc7), OUT/model.onnx
(input data: N x 3 x 112 x 112 raw 0..255 RGB), and with --int8 OUT/model-int8.onnx and the report
OUT/deploy.md / deploy.json. onnxruntime runs in the .venv-ort environment ('make venv-ort').
The ONNX model must match MXNet's embeddings on --num-images images of --data-dir within a cosine
distance of 1e-5, or nothing is written.
"""
import argparse

from facekd.deploy import exporter
from facekd.deploy.measure import LATENCY_RUNS, THROUGHPUT_BATCH, THROUGHPUT_RUNS, WARMUP_RUNS
from facekd.deploy.ort_client import add_ort_argument
from facekd.errors import run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--model", required=True, help="prefix,epoch of the training checkpoint")
    p.add_argument("--out", required=True, help="new folder for the deployment files")
    p.add_argument("--data-dir", required=True,
                   help="RecordIO set (train.rec/.idx/property) whose images check parity; also holds the "
                        "--target .bin files")
    p.add_argument("--num-images", type=int, default=256, help="images of --data-dir for the parity check")
    p.add_argument("--int8", action="store_true", help="also write model-int8.onnx (static quantization) "
                                                        "and the report")
    p.add_argument("--calib-data", default="", help="RecordIO set of training images to calibrate INT8 on")
    p.add_argument("--calib-images", type=int, default=256, help="calibration images of --calib-data")
    p.add_argument("--target", default="", help="comma-separated .bin targets in --data-dir, scored in the report")
    p.add_argument("--report", action="store_true", help="the report (sizes, latency, throughput, accuracy) "
                                                          "without --int8")
    p.add_argument("--latency-runs", type=int, default=LATENCY_RUNS, help="single-image runs timed (median)")
    p.add_argument("--warmup-runs", type=int, default=WARMUP_RUNS, help="untimed runs before each timing")
    p.add_argument("--throughput-batch", type=int, default=THROUGHPUT_BATCH)
    p.add_argument("--throughput-runs", type=int, default=THROUGHPUT_RUNS, help="batches timed for images/s")
    p.add_argument("--batch-size", type=int, default=64, help="batch of the parity and accuracy runs")
    p.add_argument("--image-size", default="112,112", help="network input height,width")
    p.add_argument("--cpu-contexts", type=int, default=1, help="MXNet CPU contexts when no GPU is visible")
    p.add_argument("--overwrite", action="store_true", help="replace an --out folder written earlier by export.py")
    add_ort_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    exporter.run(exporter.settings(parse_args(argv)))
    return 0


if __name__ == "__main__":
    run_cli(main)
