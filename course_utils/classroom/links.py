"""Where the course lives: one setting, and every link that depends on it written from it.

The repository (owner/name on GitHub) and its branch are kept once, in pyproject.toml:

    [tool.course]
    repository = "owner/name"
    branch = "main"

Three kinds of text depend on them: the "Open in Colab" badges (README and the top of each
notebook), each notebook's setup cell (the `git clone` Colab runs) and the website's launch
buttons (written by `site.py` from the same setting at build time). `rewrite` rewrites the first two
from the setting; `stray_links` lists any of them that point anywhere else. No torch here.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..paths import repo_root

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
REPOSITORY = re.compile(rf"^{_NAME}/{_NAME}$")
BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
# A Colab link to a notebook on GitHub: .../github/OWNER/NAME/blob/BRANCH/PATH.ipynb
COLAB = re.compile(rf"https://colab\.research\.google\.com/github/(?P<repo>{_NAME}/{_NAME})/blob/"
                   r"(?P<branch>[A-Za-z0-9_.-]+)/(?P<path>[^\s)\"'\\]+?\.ipynb)")
# The setup cell's clone command, as it stands in the notebook's source.
CLONE = re.compile(r'\["git", "clone"[^\]]*\]')
CLONE_FOLDER = "robustness-course"  # the setup cell's later lines look for the package in this folder


@dataclass(frozen=True)
class Home:
    """A GitHub repository and branch the course's links point to."""

    repository: str
    branch: str = "main"

    def __post_init__(self):
        if not REPOSITORY.match(self.repository or ""):
            raise ValueError(f"repository must be OWNER/NAME as on GitHub, got {self.repository!r}")
        if not BRANCH.match(self.branch or "") or ".." in self.branch:
            raise ValueError(f"branch must be a git branch name, got {self.branch!r}")

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repository}"

    def colab_url(self, path: str) -> str:
        """Colab's link to open `path` (relative to the repository root) from this branch."""
        return f"https://colab.research.google.com/github/{self.repository}/blob/{self.branch}/{path}"

    def blob_url(self, path: str) -> str:
        return f"{self.url}/blob/{self.branch}/{path}"

    def clone_command(self) -> str:
        return (f'["git", "clone", "--depth", "1", "--branch", "{self.branch}", "{self.url}", '
                f'"{CLONE_FOLDER}"]')


def _pyproject(root: Path) -> Path:
    return root / "pyproject.toml"


def home(root: Path | None = None) -> Home:
    """The setting in pyproject.toml's [tool.course] table."""
    table = tomllib.loads(_pyproject(root or repo_root()).read_text()).get("tool", {}).get("course", {})
    if "repository" not in table:
        raise ValueError("pyproject.toml has no [tool.course] repository = \"owner/name\"")
    return Home(table["repository"], table.get("branch", "main"))


def set_home(new: Home, root: Path | None = None) -> None:
    """Write `new` into pyproject.toml's [tool.course] table (the rest of the file kept as it is)."""
    path = _pyproject(root or repo_root())
    text = path.read_text()
    home(root or repo_root())  # fails clearly when the table is missing
    for key, value in (("repository", new.repository), ("branch", new.branch)):
        pattern = re.compile(rf'(\[tool\.course\][^\[]*?^{key}\s*=\s*)"[^"]*"', re.M | re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: f'{m.group(1)}"{value}"', text, count=1)
        else:
            text = text.replace("[tool.course]\n", f'[tool.course]\n{key} = "{value}"\n', 1)
    path.write_text(text)


def _files(root: Path) -> list[Path]:
    from .runner import find_notebooks

    return [root / "README.md", *find_notebooks(root / "notebooks")]


def _rewrite_text(text: str, where: Home, notebook_dir: str = "notebooks") -> str:
    def colab(match: re.Match) -> str:
        name = match.group("path").rsplit("/", 1)[-1]
        return where.colab_url(f"{notebook_dir}/{name}")

    text = COLAB.sub(colab, text)
    return CLONE.sub(lambda m: where.clone_command(), text)


def rewrite(where: Home | None = None, root: Path | None = None) -> list[Path]:
    """Point every badge and setup cell at `where` (default: the setting); the files that changed."""
    root = root or repo_root()
    where = where or home(root)
    changed = []
    for path in _files(root):
        before = path.read_text()
        if path.suffix == ".ipynb":
            nb = json.loads(before)
            for cell in nb["cells"]:
                source = "".join(cell["source"])
                new = _rewrite_text(source, where)
                if new != source:
                    cell["source"] = new.splitlines(keepends=True)
            after = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        else:
            after = _rewrite_text(before, where)
        if after != before:
            path.write_text(after)
            changed.append(path)
    return changed


def stray_links(where: Home | None = None, root: Path | None = None) -> list[str]:
    """Every Colab link or clone command that does not point at `where`, and every notebook without its
    own badge and setup cell; empty when all is as the setting says."""
    root = root or repo_root()
    where = where or home(root)
    problems = []
    for path in _files(root):
        rel = path.relative_to(root)
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        for m in COLAB.finditer(text):
            name = m.group("path").rsplit("/", 1)[-1]
            if m.group(0) != where.colab_url(f"notebooks/{name}"):
                problems.append(f"{rel}: {m.group(0)}")
            if not (root / "notebooks" / name).is_file():
                problems.append(f"{rel}: {m.group(0)} opens a notebook that does not exist")
        for m in CLONE.finditer(text):
            if m.group(0) != where.clone_command():
                problems.append(f"{rel}: {m.group(0)}")
        if path.suffix == ".ipynb":
            if where.colab_url(f"notebooks/{path.name}") not in text:
                problems.append(f"{rel}: no Colab badge for this notebook")
            if where.clone_command() not in text:
                problems.append(f"{rel}: no setup cell cloning {where.url} ({where.branch})")
    return problems
