"""Progress bars: live tqdm for a person, one summary line (or nothing) for a stored or headless run."""
import pytest
import torch
from tqdm.auto import tqdm

from course_utils import progress
from course_utils.progress import bar


@pytest.fixture
def summary(monkeypatch):
    monkeypatch.setenv("COURSE_PROGRESS", "summary")


def test_mode_follows_the_environment(monkeypatch):
    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    assert progress.mode() == "live"
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    assert progress.mode() == "summary"
    monkeypatch.setenv("COURSE_PROGRESS", "off")
    assert progress.mode() == "off"
    monkeypatch.setenv("COURSE_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="COURSE_PROGRESS"):
        progress.mode()


def test_live_mode_is_tqdm(monkeypatch):
    monkeypatch.setenv("COURSE_PROGRESS", "live")
    b = bar(total=3, desc="x")
    assert isinstance(b, tqdm)
    b.close()


def test_summary_prints_one_line_with_the_count_and_the_last_postfix(summary, capsys):
    for _ in (b := bar(range(4), desc="MILP ε=0.1", unit="digits")):
        b.set_postfix(robust=3, broken=1)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("MILP ε=0.1: 4/4 digits in ") and out.rstrip().endswith("(robust 3, broken 1)")
    assert "%|" not in out


def test_summary_of_a_bar_updated_by_hand(summary, capsys):
    with bar(total=10, desc="grading", unit="notebooks") as b:
        b.update(3)
        b.update(2)
    assert capsys.readouterr().out.startswith("grading: 5/10 notebooks in ")


def test_transient_and_disabled_bars_print_nothing(summary, capsys):
    b = bar(total=2, desc="fit", leave=False)
    b.update(2)
    b.close()
    b.close()  # closing twice is harmless, as in tqdm
    bar(total=2, disable=True).close()
    assert capsys.readouterr().out == ""


def test_off_prints_nothing_even_for_bars_that_stay(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PROGRESS", "off")
    assert list(bar(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr().out == ""


def test_fit_prints_nothing_of_its_bar_in_a_summary(summary, capsys):
    from course_utils.train import fit

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(8, 1, 2, 2), torch.tensor([0, 1] * 4)
    history = fit(model, x, y, epochs=2, batch_size=4, progress=True)
    assert len(history) == 2
    assert capsys.readouterr().out == ""
