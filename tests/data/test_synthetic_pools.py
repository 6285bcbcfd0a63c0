"""Pooled verification pairs (--target-images K): without a pool the plan and the render tasks are
today's; with one, pairs draw their images from K images per held-out identity and profile, no pair
repeats, each pool image is rendered once and its bytes fill every slot that uses it."""
import dataclasses
import os

import pytest

from facekd.data.synthetic import SyntheticParams, generate_synthetic, plan_all_pairs, val_identities
from facekd.data.synthetic import dataset as synthetic_dataset
from facekd.data.synthetic import plan as synthetic_plan
from facekd.data.synthetic.identity import nearest_identities
from facekd.data.synthetic.image import image_rng
from facekd.errors import FaceKDError
from facekd.evaluation.verification import load_target
from datahelpers import read_bin_file, run_make_synthetic  # tests/data/datahelpers.py

TARGETS = (("synth_easy", "easy", "easy"), ("synth_pose", "easy", "pose"), ("synth_age", "easy", "age"))
POOLED = SyntheticParams(identities=4, images_per_identity=2, val_identities=10, pairs=40, seed=5, target_images=3)


# ----------------------------------------------------------------------------- K = 0: today's plan

def _todays_pairs(params, t, nearest):
    """The pair draws as the generator made them before pools existed: stream key (3, t), pair k same when
    k is even, a drawn first, then (different pairs) a look-alike or a uniform other identity."""
    rng = image_rng(params.seed, (3, t))
    pairs = []
    for k in range(params.pairs):
        a = int(rng.integers(params.val_identities))
        if k % 2 == 0:
            pairs.append((a, a, True))
        elif rng.random() < params.similar_fraction:
            pairs.append((a, int(nearest[a, rng.integers(nearest.shape[1])]), False))
        else:
            b = int(rng.integers(params.val_identities - 1))
            pairs.append((a, b + (b >= a), False))
    return pairs


@pytest.mark.parametrize("params", [SyntheticParams(identities=3, images_per_identity=2, val_identities=5,
                                                    pairs=20, seed=4),
                                    SyntheticParams(identities=2, images_per_identity=2, val_identities=40,
                                                    pairs=400, seed=3, similar_fraction=0.3)])
def test_without_a_pool_the_plan_and_tasks_are_todays(params):
    val = val_identities(params)
    nearest = nearest_identities(val, min(3, len(val) - 1))
    plans = plan_all_pairs(params, val)
    layouts = synthetic_dataset.target_layouts(params, val, plans)
    for t, ((_, first, second), pairs, layout) in enumerate(zip(TARGETS, plans, layouts)):
        assert [(p.a, p.b, p.same) for p in pairs] == _todays_pairs(params, t, nearest)
        assert all(p.image_a is None and p.image_b is None for p in pairs)
        # two fresh images per pair, keyed (4, t, k, side) as before: the same renders, the same bytes
        expected = [(val[p.a if side == 0 else p.b], (first, second)[side], params.seed, (4, t, k, side))
                    for k, p in enumerate(pairs) for side in (0, 1)]
        assert layout.tasks == expected and layout.slots == list(range(2 * params.pairs))


# ----------------------------------------------------------------------------- K > 0: the plan

def _canonical(target, pair):
    """The two images of a pooled pair as (pool profile, identity, index); unordered within one pool."""
    _, first, second = target
    x, y = (first, pair.a, pair.image_a), (second, pair.b, pair.image_b)
    return frozenset((x, y)) if first == second else (x, y)


def test_pooled_pairs_draw_from_the_right_pools_without_repeats():
    p = POOLED
    val = val_identities(p)
    plans = plan_all_pairs(p, val)
    layouts = synthetic_dataset.target_layouts(p, val, plans)
    for t, (target, pairs, layout) in enumerate(zip(TARGETS, plans, layouts)):
        _, first, second = target
        assert [pr.same for pr in pairs] == [k % 2 == 0 for k in range(p.pairs)]  # folds stay balanced
        assert all((pr.a == pr.b) == pr.same for pr in pairs)
        assert all(0 <= pr.image_a < p.target_images and 0 <= pr.image_b < p.target_images for pr in pairs)
        keys = [_canonical(target, pr) for pr in pairs]
        assert len(set(keys)) == len(keys)  # no pair twice, in either order
        if first == second:
            assert all(pr.image_a != pr.image_b for pr in pairs if pr.same)
        # each slot's render task: its identity, its side's profile, a key naming its pool entry
        for k, pr in enumerate(pairs):
            for side, (identity, image) in enumerate(((pr.a, pr.image_a), (pr.b, pr.image_b))):
                ident, profile, seed, key = layout.tasks[layout.slots[2 * k + side]]
                pool = 1 if side == 1 and second != first else 0
                assert ident == val[identity] and profile == (first, second)[side] and seed == p.seed
                assert key == (6, t, pool, identity, image)
        keys = [task[3] for task in layout.tasks]
        assert len(set(keys)) == len(keys)  # each pool image rendered once
        for pool in (0, 1):
            assert sum(key[2] == pool for key in keys) <= p.val_identities * p.target_images
        assert len(keys) <= (1 if first == second else 2) * p.val_identities * p.target_images
        assert len(keys) < 2 * p.pairs  # images are reused
    assert plans == plan_all_pairs(p, val)  # decided by the parameters and seed alone


def test_pool_filled_to_capacity_and_beyond():
    # 10 same pairs from 10 identities x 1 unordered pair of 2 images: every same pair of synth_easy used once
    full = SyntheticParams(identities=2, images_per_identity=2, val_identities=10, pairs=20, seed=1, target_images=2)
    easy = plan_all_pairs(full, val_identities(full))[0]
    assert sorted(pr.a for pr in easy if pr.same) == list(range(10))
    with pytest.raises(FaceKDError, match=r"^--pairs 22 is too many for --target-images 2 x --val-identities 10; "
                                          r"raise one of them$"):
        dataclasses.replace(full, pairs=22).validate()
    with pytest.raises(FaceKDError, match=r"^--target-images must be 0 .* at least 2 .*; got 1$"):
        dataclasses.replace(full, target_images=1).validate()
    with pytest.raises(FaceKDError, match="--target-images"):
        dataclasses.replace(full, target_images=-2).validate()


def test_redraws_are_bounded(monkeypatch):
    p = SyntheticParams(identities=2, images_per_identity=2, val_identities=10, pairs=20, seed=1, target_images=2)
    monkeypatch.setattr(synthetic_plan, "MAX_REDRAWS", 1)  # the first repeated pair cannot be drawn again
    with pytest.raises(FaceKDError, match=r"^--pairs 20 is too many for --target-images 2 x --val-identities 10"):
        plan_all_pairs(p, val_identities(p))


# ----------------------------------------------------------------------------- K > 0: the files

def test_pooled_dataset_renders_each_image_once(tmp_path, monkeypatch, synthetic_dir, synthetic_params):
    p = dataclasses.replace(synthetic_params, target_images=4)
    val = val_identities(p)
    plans = plan_all_pairs(p, val)
    keys_per_target = [[task[3] for task in layout.tasks]
                       for layout in synthetic_dataset.target_layouts(p, val, plans)]
    rendered = []
    real = synthetic_dataset.render_encoded
    monkeypatch.setattr(synthetic_dataset, "render_encoded", lambda task: rendered.append(task[3]) or real(task))
    summary = generate_synthetic(str(tmp_path / "pooled"), p, workers=1, progress=False)
    assert len(rendered) == len(set(rendered)) == summary.rendered == p.num_images + sum(summary.target_images)
    assert summary.target_images == tuple(len(keys) for keys in keys_per_target)
    for name in ("train.rec", "train.idx", "property"):  # the pools draw from streams of their own
        assert (tmp_path / "pooled" / name).read_bytes() == (synthetic_dir / name).read_bytes()
    for (name, first, second), pairs, distinct in zip(TARGETS, plans, summary.target_images):
        bins, issame = read_bin_file(tmp_path / "pooled" / f"{name}.bin")
        assert len(bins) == 2 * p.pairs and list(issame) == [pr.same for pr in pairs]
        assert len(set(bins)) == distinct < 2 * p.pairs
        entry = [((pr.a, pr.image_a, 0), (pr.b, pr.image_b, 1 if second != first else 0)) for pr in pairs]
        slot_entry = [e for both in entry for e in both]
        for i in range(len(bins)):
            for j in range(i):
                assert (bins[i] == bins[j]) == (slot_entry[i] == slot_entry[j]), (name, i, j)
        vset = load_target(str(tmp_path / "pooled" / f"{name}.bin"))  # the verifier finds the same images
        assert len(vset.images) == distinct
    again = tmp_path / "again"
    monkeypatch.setattr(synthetic_dataset, "render_encoded", real)
    generate_synthetic(str(again), p, workers=2, progress=False)
    for name in sorted(os.listdir(again)):
        assert (again / name).read_bytes() == (tmp_path / "pooled" / name).read_bytes(), name


def test_cli_prints_distinct_images_and_refuses_too_many_pairs(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "d"), "--identities", "2", "--images-per-identity", "2", "--val-identities",
            "3", "--workers", "1", "--quiet", "--target-images", "2"]
    code, out, err = run_make_synthetic(argv + ["--pairs", "6"], capsys)
    assert code == 0, err
    counts = [len(set(read_bin_file(tmp_path / "d" / f"{name}.bin")[0])) for name, _, _ in TARGETS]
    assert (f"synth_easy, synth_pose, synth_age with 6 pairs each ({counts[0]} / {counts[1]} / {counts[2]} "
            "distinct images) from 3 held-out identities") in out
    code, out, err = run_make_synthetic(argv + ["--pairs", "8", "--overwrite"], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].endswith(
        " error: --pairs 8 is too many for --target-images 2 x --val-identities 3; raise one of them")
    code, out, err = run_make_synthetic(["--out", str(tmp_path / "e"), "--target-images", "1", "--quiet"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--target-images" in err
    assert sorted(os.listdir(tmp_path)) == ["d"]
