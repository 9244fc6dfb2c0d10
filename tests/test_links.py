"""One setting for where the course lives; every badge and setup cell written from it."""
import json
import shutil

import pytest

from course_utils.classroom import links
from course_utils.classroom.cli import main
from course_utils.classroom.links import Home, home, rewrite, set_home, stray_links
from course_utils.paths import repo_root


@pytest.fixture
def copy(tmp_path):
    """The README, the notebooks and pyproject.toml of this checkout, in a folder the test may change."""
    root = repo_root()
    shutil.copy(root / "README.md", tmp_path / "README.md")
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(root / "notebooks", tmp_path / "notebooks",
                    ignore=shutil.ignore_patterns("*.results.json", ".ipynb_checkpoints"))
    return tmp_path


def test_nothing_in_the_checkout_points_anywhere_else():
    assert stray_links() == []


def test_every_notebook_has_its_own_badge_and_a_setup_cell_for_the_setting():
    where = home()
    for nb in sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        sources = ["".join(c["source"]) for c in cells]
        assert any(where.colab_url(f"notebooks/{nb.name}") in s for s in sources[:3]), nb.name
        setup = next(s for s in sources if "git" in s and "clone" in s)
        assert f'"--branch", "{where.branch}", "{where.url}"' in setup, nb.name
    readme = (repo_root() / "README.md").read_text()
    assert all(where.colab_url(f"notebooks/{nb.name}") in readme
               for nb in (repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_rewrite_points_everything_at_a_new_home_and_back(copy):
    before = {p: p.read_bytes() for p in [copy / "README.md", *copy.glob("notebooks/*.ipynb")]}
    old, new = home(copy), Home("someone/fork-of-course", "teaching-2027")
    set_home(new, copy)
    assert home(copy) == new
    changed = rewrite(root=copy)
    assert set(changed) == set(before)  # README and every notebook
    assert stray_links(root=copy) == []
    strays = stray_links(old, root=copy)
    assert strays and all("someone/fork-of-course" in s or "no " in s for s in strays)
    text = (copy / "notebooks" / "01_fgsm.ipynb").read_text()
    assert "robustness-course/robustness-course" not in text
    assert "colab.research.google.com/github/someone/fork-of-course/blob/teaching-2027/notebooks/01_fgsm.ipynb" in text
    json.loads(text)  # still a notebook
    set_home(old, copy)
    rewrite(root=copy)
    assert {p: p.read_bytes() for p in before} == before  # byte for byte


def test_a_link_to_elsewhere_is_found(copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text() + "\n[fork](https://colab.research.google.com/github/other/repo/blob/main/"
                                           "notebooks/02_pgd.ipynb)\n")
    nb = copy / "notebooks" / "03_dimension_scaling.ipynb"
    nb.write_text(nb.read_text().replace('\\"--branch\\", \\"main\\"', '\\"--branch\\", \\"dev\\"'))
    problems = stray_links(root=copy)
    assert any("README.md" in p and "other/repo" in p for p in problems)
    assert any("03_dimension_scaling" in p and "dev" in p for p in problems)
    missing = copy / "notebooks" / "11_missing.ipynb"
    assert not missing.exists()
    readme.write_text(readme.read_text() + f"\n{home(copy).colab_url('notebooks/11_missing.ipynb')}\n")
    assert any("does not exist" in p for p in stray_links(root=copy))


@pytest.mark.parametrize("repository, branch", [("no-slash", "main"), ("a/b/c", "main"), ("a/b", "../x"),
                                                ("a/b", ""), ("", "main"), ("a b/c", "main")])
def test_bad_settings_are_refused(repository, branch):
    with pytest.raises(ValueError, match="repository|branch"):
        Home(repository, branch)


def test_missing_setting_is_a_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(ValueError, match=r"\[tool.course\]"):
        home(tmp_path)


def test_command_line_check_and_set(copy, monkeypatch, capsys):
    monkeypatch.setattr(links, "repo_root", lambda: copy)
    assert main(["links", "--check"]) == 0
    assert main(["links", "--set", "someone/fork", "--branch", "dev"]) == 0
    out = capsys.readouterr().out
    assert "rewrote" in out and "no link(s) pointing away from https://github.com/someone/fork (dev)" in out
    assert 'repository = "someone/fork"' in (copy / "pyproject.toml").read_text()
