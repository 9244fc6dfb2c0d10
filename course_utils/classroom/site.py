"""The course as a website: the committed notebooks, as they are stored, rendered by Jupyter Book.

    python -m course_utils site            # builds into _site/ (git-ignored); open _site/html/index.html

Nothing is executed: each page shows the outputs the notebook was committed with. The README is
the front page; the notebooks follow in course order, each with a "launch on Colab" button and a
download button (the header of the page), pointed at the repository of `links.home()`.

Jupyter Book 1 (Sphinx, MyST-NB, the book theme), not 2: version 1 is pure Python and builds from
PyPI packages alone, offline, in the course's own environment; version 2 is a front end to the
Node.js `mystmd` tool, whose HTML theme it fetches from the web at build time. MathJax is served
from the site itself (`sphinx-mathjax-offline`), so pages render math without reaching a CDN.

What the staging step changes in the copies it builds from (the committed files stay as they are):
- an interactive widget's output (01's ε slider) becomes the last frame it drew, with a note,
  because a page without a kernel cannot move a slider; the widget state is dropped, so no page
  loads widget JavaScript from a CDN;
- "Open in Colab" badges become text links (the badge image lives on Colab's server);
- relative links to files that are not pages (e.g. benchmarks/RESULTS.md) point at GitHub.
No torch here.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..paths import repo_root
from . import notebook_widgets
from .links import Home, home
from .runner import find_notebooks

TITLE = "Adversarial robustness, hands on"
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\(([^)\s]+)\)")
LINK = re.compile(r"(\]\()([^)\s]+)(\))")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#|/)", re.I)


# The site's icon, so that browsers do not ask for a /favicon.ico it does not have (a 404 on every page).
FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1f4e79"/>
<text x="16" y="23" font-size="22" font-family="serif" text-anchor="middle" fill="#fff">&#949;</text></svg>
"""


def default_out() -> Path:
    return repo_root() / "_site"


def pages(root: Path) -> list[str]:
    """The site's pages in order, as paths without suffix relative to the source folder."""
    return ["README"] + [f"notebooks/{p.stem}" for p in find_notebooks(root / "notebooks")]


def rewrite_markdown(text: str, where: Home, here: str, root: Path, page_files: set[str]) -> str:
    """Badges → text links; relative links to repository files that are not pages → GitHub.

    `here` is the folder (relative to the repository root) of the file the text comes from.
    """
    text = BADGE.sub(lambda m: f"[▶ Open in Colab]({m.group(1)})", text)

    def link(m: re.Match) -> str:
        target = m.group(2)
        if EXTERNAL.match(target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = (root / here / path).resolve()
        try:
            rel = resolved.relative_to(root.resolve()).as_posix()
        except ValueError:
            return m.group(0)
        if rel in page_files or not resolved.exists():
            return m.group(0)  # a page (MyST links it), or broken: the site's link test will say so
        url = where.blob_url(rel) if resolved.is_file() else f"{where.url}/tree/{where.branch}/{rel}"
        return f"{m.group(1)}{url}{'#' + anchor if anchor else ''}{m.group(3)}"

    return LINK.sub(link, text)


def static_widgets(nb: dict) -> int:
    """Replace each widget output by the frames it last drew, with a note (in place); how many."""
    replaced = 0
    for cell in nb.get("cells", []):
        outs = []
        for out in cell.get("outputs", []):
            if notebook_widgets.VIEW not in out.get("data", {}):
                outs.append(out)
                continue
            settings = ", ".join(f"{name} = {value:g}" if isinstance(value, (int, float)) else f"{name} = {value}"
                                 for name, value in notebook_widgets.controls(nb, out))
            note = ("<p class=\"course-static-widget\"><em>An interactive widget"
                    + (f" ({settings})" if settings else "")
                    + ": open the notebook on Colab or locally to move it. Below, the last frame it drew.</em></p>")
            outs.append({"output_type": "display_data", "metadata": {}, "data": {"text/html": note}})
            outs.extend(notebook_widgets.frozen_outputs(nb, out))
            replaced += 1
        if "outputs" in cell:
            cell["outputs"] = outs
    nb.get("metadata", {}).pop("widgets", None)
    return replaced


def extensions() -> list[str]:
    """Jupyter Book's Sphinx extensions without sphinx-thebe, plus MathJax served by the site.

    sphinx-thebe (live code cells through Binder, which the course does not use) declares its script
    twice on every page with this Sphinx, an error in the browser's console.
    """
    from jupyter_book.config import get_default_sphinx_config

    return [e for e in get_default_sphinx_config()["extensions"] if e != "sphinx_thebe"] + ["sphinx-mathjax-offline"]


def config(where: Home) -> dict:
    """Jupyter Book's _config.yml (written as JSON, which YAML reads)."""
    return {
        "title": TITLE,
        "author": "the course's authors",
        "copyright": "2026",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["amsmath", "dollarmath", "colon_fence"],
                  "myst_url_schemes": ["mailto", "http", "https"]},
        "repository": {"url": where.url, "branch": where.branch, "path_to_book": ""},
        "launch_buttons": {"colab_url": "https://colab.research.google.com", "notebook_interface": "classic",
                           "binderhub_url": "", "jupyterhub_url": "", "thebe": False},
        "html": {"favicon": "favicon.svg", "use_repository_button": True, "use_issues_button": False, "use_edit_page_button": False,
                 "home_page_in_navbar": True},
        "sphinx": {"config": {"extensions": extensions(), "html_show_sourcelink": False, "nb_merge_streams": True,
                              # the theme logs an error for a missing mode on a reader's first visit
                              "html_context": {"default_mode": "light"}}},
    }


def toc(page_list: list[str]) -> dict:
    return {"format": "jb-book", "root": page_list[0], "chapters": [{"file": p} for p in page_list[1:]]}


def stage(dest: Path, root: Path | None = None, where: Home | None = None) -> list[str]:
    """Write the book's sources into `dest` (emptied first); the pages, in order."""
    root = (root or repo_root()).resolve()
    where = where or home(root)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "notebooks").mkdir(parents=True)
    page_list = pages(root)
    page_files = {"README.md"} | {f"{p}.ipynb" for p in page_list[1:]}
    (dest / "README.md").write_text(rewrite_markdown((root / "README.md").read_text(), where, "", root, page_files))
    for page in page_list[1:]:
        nb = json.loads((root / f"{page}.ipynb").read_text())
        static_widgets(nb)
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                cell["source"] = rewrite_markdown(text, where, "notebooks", root, page_files).splitlines(keepends=True)
        (dest / f"{page}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    (dest / "favicon.svg").write_text(FAVICON)
    (dest / "_config.yml").write_text(json.dumps(config(where), indent=2) + "\n")
    (dest / "_toc.yml").write_text(json.dumps(toc(page_list), indent=2) + "\n")
    return page_list


def _jupyter_book() -> list[str]:
    try:
        import jupyter_book  # noqa: F401
    except ImportError as err:
        raise ValueError("building the site needs Jupyter Book 1: pip install -e \".[site]\"") from err
    return [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]


def build(out: Path | None = None, root: Path | None = None, where: Home | None = None, *,
          quiet: bool = True) -> Path:
    """Stage and build the site into `out` (default _site/); the folder of its HTML (open index.html)."""
    out = (out or default_out()).resolve()
    source = out / "source"
    stage(source, root, where)
    build_dir = out / "build"
    if build_dir.exists():
        shutil.rmtree(build_dir)  # a fresh build: Sphinx's cache would keep pages a rename removed
    cmd = _jupyter_book() + ["build", str(source), "--path-output", str(build_dir), "--builder", "html", "--all"]
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-4000:] if quiet else ""
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(build_dir / "_build" / "html"), str(html))
    return html
