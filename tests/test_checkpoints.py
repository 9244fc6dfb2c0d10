"""load_or_train: train once, reuse; retrain on any doubt, never return wrong weights."""
import os

import pytest
import torch

from course_utils.checkpoints import checkpoint_dir, load_or_train, scratch_checkpoint_dir
from course_utils.models import build_model

CONFIG = {"model": "linear", "epochs": 1, "lr": 0.01, "nested": {"sizes": [1, 2]}}


@pytest.fixture
def ckdir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


class Trainer:
    """A train_fn that counts its calls and gives different weights each call (seeded by the count)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, config):
        self.calls += 1
        torch.manual_seed(100 + self.calls)
        return build_model(config["model"]), [{"epoch": 1, "loss": float(self.calls)}]


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_dir_follows_env(ckdir):
    assert checkpoint_dir() == ckdir


def test_trains_once_then_loads_the_same_weights(ckdir):
    train = Trainer()
    first, history1 = load_or_train("net", train, CONFIG)
    second, history2 = load_or_train("net", train, dict(CONFIG))
    assert train.calls == 1
    assert first is not second and _same_weights(first, second)
    assert history1 == history2 == [{"epoch": 1, "loss": 1.0}]
    assert not first.training and not second.training
    assert sorted(p.name for p in ckdir.iterdir()) == ["net.pt"]  # no temporary files left behind


def test_changed_config_retrains(ckdir):
    train = Trainer()
    first, _ = load_or_train("net", train, CONFIG)
    changed, _ = load_or_train("net", train, {**CONFIG, "lr": 0.02})
    assert train.calls == 2
    assert not _same_weights(first, changed)
    again, _ = load_or_train("net", train, {**CONFIG, "lr": 0.02})  # the new config is now the cached one
    assert train.calls == 2 and _same_weights(changed, again)


def test_truncated_checkpoint_retrains_with_a_warning(ckdir):
    """A half-written file is never trusted: retrain (warning), return the new weights, rewrite the file."""
    train = Trainer()
    load_or_train("net", train, CONFIG)
    path = ckdir / "net.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="net.pt"):
        model, history = load_or_train("net", train, CONFIG)
    assert train.calls == 2 and history[0]["loss"] == 2.0
    torch.manual_seed(102)
    assert _same_weights(model, build_model("linear"))  # exactly what the second training produced
    reloaded, _ = load_or_train("net", train, CONFIG)
    assert train.calls == 2 and _same_weights(model, reloaded)
    assert sorted(p.name for p in ckdir.iterdir()) == ["net.pt"]


def test_garbage_checkpoint_retrains(ckdir):
    train = Trainer()
    (ckdir / "net.pt").write_bytes(b"not a checkpoint at all")
    with pytest.warns(UserWarning):
        load_or_train("net", train, CONFIG)
    assert train.calls == 1


@pytest.mark.parametrize("name", ["a/b", "a\\b", "", ".hidden", "../escape"])
def test_bad_names_rejected(ckdir, name):
    train = Trainer()
    with pytest.raises(ValueError, match="name"):
        load_or_train(name, train, CONFIG)
    assert train.calls == 0 and os.listdir(ckdir) == []


@pytest.mark.parametrize("config,match", [
    ({"epochs": 1}, "model"),
    ({"model": "no_such_architecture"}, "unknown model"),
    ({"model": "linear", "device": object()}, "JSON"),
])
def test_bad_configs_rejected_before_training(ckdir, config, match):
    train = Trainer()
    with pytest.raises(ValueError, match=match):
        load_or_train("net", train, config)
    assert train.calls == 0


@pytest.mark.parametrize("before", [None, "somewhere/else"])
def test_scratch_checkpoint_dir_is_fresh_and_restores_the_setting(monkeypatch, before):
    if before is None:
        monkeypatch.delenv("COURSE_CHECKPOINT_DIR", raising=False)
    else:
        monkeypatch.setenv("COURSE_CHECKPOINT_DIR", before)
    with scratch_checkpoint_dir() as fresh:
        assert checkpoint_dir() == fresh and list(fresh.iterdir()) == []
        (fresh / "model.pt").write_bytes(b"x")
    assert not fresh.exists()
    assert os.environ.get("COURSE_CHECKPOINT_DIR") == before
