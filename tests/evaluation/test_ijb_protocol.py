"""IJB 1:1 and 1:N against the float64 reference written from docs/evaluation.md (sections 4 and 5),
on a generated IJB-layout set: 10 subjects, 3 templates each, 1-3 media of 1-2 images per template."""
import itertools
import math

import mxnet as mx
import numpy as np
import pytest
from sklearn.metrics import roc_curve as sklearn_roc_curve

from facekd.embedder import Embedder
from facekd.errors import FaceKDError
from facekd.evaluation import ijb

import protocol_reference as ref
from evalhelpers import load_script, plain_flip_pair, tiny_params, tiny_symbol, write_ijb_set

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
RANKS = (1, 5, 10)
FPIRS = (0.01, 0.1)
OPTION_NAMES = ("use_flip_test", "use_norm_score", "use_detector_score")


def generate(root):
    """The set's files and its description: faces, pairs and 1:N rows as the reference reads them."""
    rng = np.random.RandomState(5)
    subjects = 10
    base = rng.randint(0, 256, size=(subjects, 112, 112, 3)).astype(np.float64)
    faces, rows_of = [], {}
    for s in range(subjects):
        for j in range(3):
            template = 100 * (s + 1) + j
            rows_of[template] = []
            for m in range(rng.randint(1, 4)):
                for _ in range(rng.randint(1, 3)):
                    noise = rng.randint(0, 256, size=(112, 112, 3))
                    face = np.clip(0.55 * base[s] + 0.45 * noise, 0, 255).astype(np.uint8)
                    name = f"{len(faces)}.png"
                    score = rng.randint(12, 65) / 64.0  # exact in float32, as the reader parses it
                    faces.append((name, template, 10 * template + m, score, face))
                    rows_of[template].append((template, s + 1, name))
    templates = sorted(rows_of)
    pairs = [(a, b, int(a // 100 == b // 100)) for a, b in itertools.combinations(templates, 2)]
    first = [t for t in templates if t % 100 == 0]
    galleries = [("G1", [r for t in first[:5] for r in rows_of[t]]),
                 ("G2", [r for t in first[5:] for r in rows_of[t]])]
    probes = [r for t in templates if t % 100 != 0 for r in rows_of[t]]
    write_ijb_set(root, "ijbx", faces, pairs, galleries, probes)
    return faces, pairs, galleries, probes


@pytest.fixture(scope="module")
def ijb_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijb")
    faces, pairs, galleries, probes = generate(root)
    arg, aux = tiny_params((112, 112), seed=2)
    orig, flip = plain_flip_pair(arg, aux, np.stack([f[4] for f in faces]))
    return dict(root=root, faces=faces, pairs=pairs, galleries=galleries, probes=probes, arg=arg, aux=aux,
                orig=orig, flip=flip, meta=ijb.read_ijb_meta(str(root), "IJBX"))


def reference(s, orig, flip, options):
    """1:1 scores and TARs, 1:N of both protocols, of the reference on raw embeddings."""
    faces = s["faces"]
    tf, scores, tars = ref.one_to_one(orig, flip, [f[3] for f in faces], [f[1] for f in faces],
                                      [f[2] for f in faces], [p[:2] for p in s["pairs"]],
                                      [p[2] for p in s["pairs"]], FARS, **options)
    lists = [[r[:2] for r in rows] for _, rows in s["galleries"]]
    probes = [r[:2] for r in s["probes"]]
    return dict(scores=scores, tars=tars, ijb_1n=ref.ijb_1n(tf, lists, probes, RANKS, FPIRS),
                ijb_evals=ref.ijb_evals(tf, lists, probes, RANKS, FPIRS))


def test_reference_roc_is_sklearns(ijb_set):
    """The reference's ROC (written from the description) is the curve ijb_11.py gets from scikit-learn."""
    expected = reference(ijb_set, ijb_set["orig"], ijb_set["flip"], dict.fromkeys(OPTION_NAMES, True))
    labels = [p[2] for p in ijb_set["pairs"]]
    fpr, tpr = ref.roc(labels, expected["scores"])
    sk_fpr, sk_tpr, _ = sklearn_roc_curve(labels, expected["scores"])
    np.testing.assert_array_equal(fpr, sk_fpr)
    np.testing.assert_array_equal(tpr, sk_tpr)


def test_embeddings_match_plain_forward(ijb_set):
    emb = Embedder(tiny_symbol(), ijb_set["arg"], ijb_set["aux"], [mx.cpu()], 6)
    orig, flip = ijb.embed_faces(emb, ijb_set["meta"], progress=False)
    scale = np.abs(ijb_set["orig"]).max()
    np.testing.assert_allclose(orig, ijb_set["orig"], rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(flip, ijb_set["flip"], rtol=1e-5, atol=1e-5 * scale)
    only, none = ijb.embed_faces(emb, ijb_set["meta"], flip=False, progress=False)
    assert none is None
    np.testing.assert_allclose(only, ijb_set["orig"], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("flags", list(itertools.product([True, False], repeat=3)),
                         ids=lambda f: "F{:d}N{:d}D{:d}".format(*f))
def test_every_step_matches_reference(ijb_set, flags):
    options = dict(zip(OPTION_NAMES, flags))
    expected = reference(ijb_set, ijb_set["orig"], ijb_set["flip"], options)
    for protocol in ("ijb_1n", "ijb_evals"):
        got = ijb.evaluate_embeddings(ijb_set["meta"], ijb_set["orig"], ijb_set["flip"],
                                      ijb.FeatureOptions(**options), FARS, protocol)
        np.testing.assert_allclose(got.scores, expected["scores"], rtol=0, atol=1e-12)
        assert list(got.tars) == expected["tars"]
        if protocol == "ijb_1n":
            (one,) = got.identification
            assert (one.gallery, one.probes, one.gallery_size) == ("G1+G2", 20, 10)
            assert (one.ranks, one.tpir) == expected["ijb_1n"]
        else:
            per_gallery, mean = expected["ijb_evals"]
            assert [r.gallery for r in got.identification] == ["G1", "G2", "mean of G1, G2"]
            assert [(r.mated, r.nonmated) for r in got.identification[:2]] == [(10, 10), (10, 10)]
            assert [(r.ranks, r.tpir) for r in got.identification] == per_gallery + [mean]
    if flags == (True, True, True):  # the defaults: figures worth a look (pytest -s)
        print(f"\nIJB test set, defaults N1D1F1: TAR@FAR {FARS}\n  ours      {list(got.tars)}\n"
              f"  reference {expected['tars']}")


def test_generated_set_is_not_trivial(ijb_set):
    expected = reference(ijb_set, ijb_set["orig"], ijb_set["flip"], dict.fromkeys(OPTION_NAMES, True))
    assert len(set(expected["tars"])) >= 3  # TAR varies along the FARs
    rates, tpir = expected["ijb_1n"]
    assert 0 < rates[1] < rates[10] and 0 < tpir[0.01] < 1
    # option changes change the scores
    other = reference(ijb_set, ijb_set["orig"], ijb_set["flip"], dict.fromkeys(OPTION_NAMES, False))
    assert np.abs(np.array(other["scores"]) - expected["scores"]).max() > 1e-3


def _figures(line):
    return [field.split(": ")[1] if ": " in field else field for field in line.split("\t")[2:]]


@pytest.mark.parametrize("extra,protocol", [([], "ijb_1n"),
                                            (["--no-use-flip-test", "--no-use-norm-score", "--protocol-1n",
                                              "ijb_evals"], "ijb_evals")])
def test_command(ijb_set, tmp_path, capsys, extra, protocol):
    prefix = str(tmp_path / "m" / "model")
    (tmp_path / "m").mkdir()
    mx.model.save_checkpoint(prefix, 1, tiny_symbol(), ijb_set["arg"], ijb_set["aux"])
    assert load_script("ijb").main(["--data-dir", str(ijb_set["root"]), "--target", "IJBX", "--model",
                                    f"{prefix},1", "--batch-size", "6", *extra]) == 0
    lines = capsys.readouterr().out.splitlines()
    options = {name: f"--no-{name.replace('_', '-')}" not in extra for name in OPTION_NAMES}
    mode = "N{:d}D{:d}F{:d}".format(options["use_norm_score"], options["use_detector_score"],
                                    options["use_flip_test"])
    assert lines[0] == f"[IJBX]{prefix},1\tTAR@FAR ({mode})\t" + "\t".join(f"{f:.0e}" for f in FARS)
    # the reference on this command's own embeddings (test_embeddings_match_plain_forward checks those)
    emb = Embedder.from_checkpoint(prefix, 1, [mx.cpu()], 6)
    orig, flip = ijb.embed_faces(emb, ijb_set["meta"], progress=False)
    expected = reference(ijb_set, orig, flip, options)
    assert _figures(lines[1]) == [f"{100 * t:.2f}" for t in expected["tars"]]
    results = [expected["ijb_1n"]] if protocol == "ijb_1n" else expected["ijb_evals"][0] + [expected["ijb_evals"][1]]
    assert len(lines) == 2 + len(results)
    for line, (rates, tpir) in zip(lines[2:], results):
        assert _figures(line) == [f"{100 * rates[k]:.2f}" for k in RANKS] + [f"{100 * tpir[f]:.2f}" for f in FPIRS]
    assert "1:N G1+G2 (ijb_1n: 20 probes" in lines[2] if protocol == "ijb_1n" else "1:N G1 (ijb_evals" in lines[2]


def test_insightface_rounding_of_the_fpir_count():
    # ijb_1n.py takes ceil(probes * FPIR) of the float product: 100 * 0.07 = 7.000000000000001 -> 8
    assert math.ceil(100 * 0.07) == 8
    feats = np.eye(4)
    tids = np.arange(1, 5)
    galleries = {"G1": (np.array([1, 2]), np.array([10, 20])), "G2": (np.array([3, 4]), np.array([30, 40]))}
    probes = (np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40]))
    (r,) = ijb.PROTOCOLS_1N.get("ijb_1n")(tids, feats, galleries, probes, (1,), (0.25, 1.0))
    # every probe is its own mate (score 1), every non-mate scores 0: threshold 0 -> TPIR 1
    assert r.ranks == {1: 1.0} and r.tpir == {0.25: 1.0, 1.0: 1.0}


def test_1n_list_errors(ijb_set):
    tids, feats = np.arange(1, 5), np.eye(4)
    search = ijb.PROTOCOLS_1N.get("ijb_1n")
    with pytest.raises(FaceKDError, match=r"probe template 4 \(subject 99\) has no template in gallery G1\+G2"):
        search(tids, feats, {"G1": (np.array([1]), np.array([10])), "G2": (np.array([2]), np.array([20]))},
               (np.array([3, 4]), np.array([10, 99])))
    with pytest.raises(FaceKDError, match="gallery G1: subject 10 has several gallery templates"):
        search(tids, feats, {"G1": (np.array([1, 2]), np.array([10, 10]))}, (np.array([3]), np.array([10])))
    with pytest.raises(FaceKDError, match="gallery G1 has 1 template; the ijb_1n protocol needs non-mate"):
        search(tids, feats, {"G1": (np.array([1]), np.array([10]))}, (np.array([2]), np.array([10])))
    with pytest.raises(FaceKDError, match=r"unknown 1:N protocol 'nist' for --protocol-1n; valid: ijb_1n, "
                                          r"ijb_evals"):
        ijb.evaluate_embeddings(ijb_set["meta"], ijb_set["orig"], ijb_set["flip"], protocol_1n="nist")
