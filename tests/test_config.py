"""Config tables: merge order, defaults, property overriding the class count."""
import logging

import pytest

from facekd.config import generate_config, default, read_property
from facekd.errors import FaceKDError


def test_merge_order_and_defaults():
    cfg = generate_config("y1", "emore_soft", "triplet_distillation_L2")
    assert cfg.emb_size == 512 and cfg.net_act == "relu" and cfg.net_output == "GDC"
    assert cfg.num_classes == 85742
    assert cfg.Mmin == 0.2 and cfg.Mmax == 0.5
    # a loss key that is also a flag default updates the default of that flag
    assert cfg.defaults.per_batch_size == 180 and cfg.defaults.lr == 0.001
    assert default.per_batch_size == 256  # the table itself is untouched
    assert cfg.loss == "triplet_distillation_L2" and cfg.network == "y1" and cfg.dataset == "emore_soft"


def test_arcface_constants():
    cfg = generate_config("r100", "emore", "arcface")
    assert (cfg.loss_s, cfg.loss_m1, cfg.loss_m2, cfg.loss_m3) == (64.0, 1.0, 0.5, 0.0)
    assert cfg.net_name == "fresnet" and cfg.num_layers == 100


@pytest.mark.parametrize("kind,args", [("network", ("zz", "emore", "arcface")),
                                       ("dataset", ("y1", "zz", "arcface")),
                                       ("loss", ("y1", "emore", "zz"))])
def test_unknown_names_list_valid_ones(kind, args):
    with pytest.raises(FaceKDError, match=f"unknown {kind} 'zz' for --{kind}; valid: .*"):
        generate_config(*args)


def test_property_overrides_class_count(tmp_path, caplog):
    """The run's settings take the class count and image size from the dataset, once."""
    from types import SimpleNamespace

    from facekd.training.settings import resolve

    dataset = SimpleNamespace(num_classes=123, image_size=(112, 96))  # what RecordDataset reads from property
    with caplog.at_level(logging.WARNING):
        cfg = resolve(generate_config("y1", "emore", "arcface", dataset_path=str(tmp_path)), dataset, 0)
    assert cfg.num_classes == 123 and cfg.image_shape == (112, 96, 3)
    assert "property says 123 classes" in caplog.text
    cfg = resolve(generate_config("y1", "synthetic", "arcface", dataset_path=str(tmp_path)), dataset, 0)
    assert cfg.num_classes == 123


def test_settings_are_fixed_once_computed(tmp_path):
    from types import SimpleNamespace

    from facekd.training.settings import resolve

    point = SimpleNamespace(meta={"step": 40, "epoch": 2, "position": {"batch": 5}}, params_file="m-resume.params",
                            states_file="m-resume.states")
    settings = resolve(generate_config("y1", "emore_soft", "margin_distillation"),
                       SimpleNamespace(num_classes=7, image_size=(112, 112)), 512, point)
    assert (settings.teacher_dim, settings.begin_step, settings.begin_epoch) == (512, 40, 2)
    assert settings.resume_params == "m-resume.params" and settings.resume_position == {"batch": 5}
    assert settings.get("alpha") is None and settings["Mmax"] == 0.5
    with pytest.raises(TypeError, match="fixed once computed"):
        settings.num_classes = 8
    with pytest.raises(TypeError):
        settings["num_classes"] = 8


def test_bad_property(tmp_path):
    (tmp_path / "property").write_text("abc\n")
    with pytest.raises(FaceKDError, match="property"):
        read_property(str(tmp_path))


def test_config_tables_and_registries_list_the_same_names():
    """A table without a builder (or a builder no table reaches) is a name users cannot use."""
    from facekd import config, losses, symbols

    assert sorted(config.network) == symbols.NETWORKS.names()
    assert sorted(config.loss) == losses.LOSSES.names()
