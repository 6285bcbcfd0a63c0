"""Search PocketNet cells with differentiable architecture search (DARTS), as PocketNet did.

    python3 -u recognition/search.py --data-dir ../datasets/faces_casia --out ./models/search-casia

Writes --out/genotype.json (and genotype-NNNN.json, alphas-NNNN.png per epoch); train it with
    python3 -u recognition/train.py --network pocketnet --genotype ./models/search-casia/genotype.json ...
Guide: docs/nas.md.
"""
from facekd.errors import run_cli
from facekd.search.supernet import use_plain_kernels

use_plain_kernels()  # before MXNet runs any operator: its oneDNN kernels get the supernet's gradients wrong

from facekd.search.searcher import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
