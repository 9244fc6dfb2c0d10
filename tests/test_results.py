"""The results JSON that notebooks leave for graders."""
import json

import numpy as np
import pytest
import torch

from course_utils.classroom.results import load_results, results_dir, save_results


def _strict_json(text: str):
    """json.loads, but refusing the NaN/Infinity tokens that standard JSON does not have."""
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=reject)


@pytest.fixture
def resdir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


def test_results_dir_follows_env(resdir):
    assert results_dir() == resdir


def test_save_results_writes_strict_json_with_plain_values(resdir):
    metrics = {
        "clean_acc": torch.tensor(0.987654321),
        "curve": torch.tensor([1.0, 0.5, 0.25]),
        "np_value": np.float64(0.123456789),
        "count": np.int64(7),
        "grad_tensor": torch.tensor(0.5, requires_grad=True) * 1,
        "nested": {"eps": (0.1, 0.2), 3: "three"},
        "nan": float("nan"),
        "inf": float("inf"),
        "neg_inf": np.float32(-np.inf),
        "tensor_nan": torch.tensor([float("nan"), 1.0]),
    }
    path = save_results("01_fgsm", metrics, {"check_fgsm": True, "check_pgd": 0}, "fast")
    assert path == resdir / "01_fgsm.results.json"
    payload = _strict_json(path.read_text())
    assert payload["notebook"] == "01_fgsm" and payload["profile"] == "fast"
    assert payload["checks"] == {"check_fgsm": True, "check_pgd": False}
    m = payload["metrics"]
    assert m["clean_acc"] == pytest.approx(0.9877, abs=1e-9)  # rounded to 4 digits
    assert m["curve"] == [1.0, 0.5, 0.25]
    assert m["np_value"] == pytest.approx(0.1235, abs=1e-9)
    assert m["count"] == 7 and isinstance(m["count"], int)
    assert m["grad_tensor"] == 0.5
    assert m["nested"] == {"eps": [0.1, 0.2], "3": "three"}
    for key in ("nan", "inf", "neg_inf"):
        assert not isinstance(m[key], float), key  # a string (or null), never a bare NaN token
    assert not isinstance(m["tensor_nan"][0], float) and m["tensor_nan"][1] == 1.0
    assert load_results(path) == payload
    assert [p.name for p in resdir.iterdir()] == ["01_fgsm.results.json"]  # no temporary file left


def test_save_results_overwrites(resdir):
    save_results("nb", {"a": 1}, {}, "fast")
    path = save_results("nb", {"a": 2}, {}, "full")
    assert load_results(path)["metrics"] == {"a": 2} and load_results(path)["profile"] == "full"
