"""verification.py prints the threshold it chose as a cosine, the number compare.py --threshold takes."""
import mxnet as mx
import numpy as np
import pytest

from facekd.deploy.inference import verdict
from facekd.evaluation import verification as V


def _pairs(rng, n_pairs, dim=16):
    """Unit embeddings (2P, d) whose same pairs are closer on average, and the labels."""
    issame = rng.rand(n_pairs) < 0.5
    first = rng.randn(n_pairs, dim)
    noise = np.where(issame[:, None], 0.7, 2.5) * rng.randn(n_pairs, dim)
    e = np.empty((2 * n_pairs, dim))
    e[0::2], e[1::2] = first, first + noise
    return e / np.linalg.norm(e, axis=1, keepdims=True), issame


def test_one_fold_threshold_as_cosine_reproduces_the_accuracy():
    """With one fold the protocol picks, on all pairs, the grid threshold of best accuracy: the printed
    cosine must split the pairs exactly as that threshold does (brute force over the grid here)."""
    emb, issame = _pairs(np.random.RandomState(0), 300)
    result = V.evaluate_embeddings(emb, issame, nfolds=1)
    cos = np.sum(emb[0::2] * emb[1::2], axis=1)
    dist = np.sum((emb[0::2] - emb[1::2]) ** 2, axis=1)
    accuracy = [np.mean((dist < t) == issame) for t in np.arange(0, 4, 0.01)]
    best = np.arange(0, 4, 0.01)[int(np.argmax(accuracy))]
    threshold = V.cosine_threshold(result)
    assert threshold == pytest.approx(1 - best / 2, abs=1e-12)
    same = np.array([verdict(c, threshold) == "same" for c in cos])
    assert np.mean(same == issame) == pytest.approx(result.acc) == pytest.approx(max(accuracy))


def test_ten_folds_print_the_mean_choice():
    emb, issame = _pairs(np.random.RandomState(1), 200)
    result = V.evaluate_embeddings(emb, issame)
    line = V.format_threshold("m,1", "synth_easy", result)
    d = float(np.mean(result.best_thresholds))
    assert line == (f"[synth_easy]m,1\tthreshold: cosine > {1 - d / 2:.4f} (squared distance < {d:.4f}, "
                    "mean of the 10 folds' choices)")
    assert V.parse_verification_rows([line]) == []  # the row parser skips it


@pytest.mark.slow
def test_verify_models_reports_a_threshold_after_each_row(y1_checkpoint, synthetic_dir):
    prefix, epoch = y1_checkpoint
    lines = []
    rows = V.verify_models([(prefix, epoch)], str(synthetic_dir), ["synth_easy", "synth_pose"], 8, [mx.cpu()],
                           report=lines.append)
    assert len(lines) == 4
    for (label, target, result), row, threshold in zip(rows, lines[0::2], lines[1::2]):
        assert row.startswith(f"[{target}]{label}\tXNorm: ")
        assert threshold == V.format_threshold(label, target, result)
