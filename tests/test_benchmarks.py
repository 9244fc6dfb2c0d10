"""The GPU benchmark that cannot run here still runs end to end, on a tiny CPU configuration."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_full_eps03.py"


def test_full_eps03_bench_trains_through_the_zoo_and_measures_worst_case(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("bench_full_eps03", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.main(["--profile", "fast", "--epochs", "1", "--steps", "1", "--eval-size", "40",
                      "--restarts", "2", "--eval-steps", "3"])
    assert row["train_s"] > 0 and 0 <= row["robust"] <= row["clean"] <= 1
    out = capsys.readouterr().out
    assert "small_cnn_pgd1_eps0.3_cyc0.005_e1" in out and "PGD-3×2" in out and "not met" in out
    assert list(tmp_path.iterdir()) == [], "the bench trains in its own scratch folder, never in the user's cache"
