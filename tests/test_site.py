"""The course website: built from the committed notebooks, then opened page by page in headless Chromium."""
import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from course_utils.classroom import notebook_widgets
from course_utils.classroom.links import Home, home
from course_utils.classroom.site import build, config, pages, rewrite_markdown, stage, static_widgets
from course_utils.paths import repo_root

from browser import artifacts_dir, browser, load, screenshot_at, serve

ROOT = repo_root()
PAGES = pages(ROOT)
NOTEBOOK_PAGES = [p for p in PAGES if p.startswith("notebooks/")]


def _committed(page: str) -> dict:
    return json.loads((ROOT / f"{page}.ipynb").read_text())


def _figures(nb: dict) -> int:
    """Pictures a page must show: every stored PNG, and each widget's last frame."""
    n = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                n += 1
            elif notebook_widgets.VIEW in out.get("data", {}):
                n += sum("image/png" in o.get("data", {}) for o in notebook_widgets.frozen_outputs(nb, out))
    return n


# ---------------------------------------------------------------- staging (no browser, no build)

def test_pages_are_the_readme_then_the_notebooks_in_course_order():
    assert PAGES[0] == "README"
    assert NOTEBOOK_PAGES == [f"notebooks/{p.stem}" for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert len(NOTEBOOK_PAGES) == 11


def test_the_slider_becomes_its_last_frame_and_no_widget_state_is_left():
    nb = _committed("notebooks/01_fgsm")
    views = notebook_widgets.views(nb)
    assert len(views) == 1, "01 stores one interactive widget (the ε slider)"
    frames = notebook_widgets.frozen_outputs(nb, views[0][1])
    assert any("image/png" in o["data"] for o in frames)
    cell_index = views[0][0]
    assert static_widgets(nb) == 1
    outs = nb["cells"][cell_index]["outputs"]
    assert all(notebook_widgets.VIEW not in o.get("data", {}) for o in outs)
    assert "ε = 0.1" in outs[0]["data"]["text/html"] and "image/png" in outs[1]["data"]
    assert "widgets" not in nb["metadata"]


def test_markdown_links_badges_and_repository_files():
    where = Home("someone/course", "dev")
    pages_ = {"README.md", "notebooks/01_fgsm.ipynb"}
    text = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.example/x) "
            "[01](notebooks/01_fgsm.ipynb) [results](benchmarks/RESULTS.md#issue-16) [code](course_utils/) "
            "[web](https://example.org/a.md) [here](#top) [gone](nowhere.md)")
    out = rewrite_markdown(text, where, "", ROOT, pages_)
    assert "[▶ Open in Colab](https://colab.example/x)" in out and "colab-badge.svg" not in out
    assert "[01](notebooks/01_fgsm.ipynb)" in out  # a page: MyST links it
    assert "[results](https://github.com/someone/course/blob/dev/benchmarks/RESULTS.md#issue-16)" in out
    assert "[code](https://github.com/someone/course/tree/dev/course_utils)" in out
    assert "[web](https://example.org/a.md)" in out and "[here](#top)" in out
    assert "[gone](nowhere.md)" in out  # left for the link test to report
    from_notebook = rewrite_markdown("[02](02_pgd.ipynb) [data](../data/README.md)", where, "notebooks", ROOT,
                                     {"notebooks/02_pgd.ipynb"})
    assert "[02](02_pgd.ipynb)" in from_notebook and "blob/dev/data/README.md" in from_notebook


def test_the_config_points_its_buttons_at_the_setting_and_executes_nothing():
    where = home()
    cfg = config(where)
    assert cfg["repository"] == {"url": where.url, "branch": where.branch, "path_to_book": ""}
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert "sphinx-mathjax-offline" in cfg["sphinx"]["config"]["extensions"]


def test_staging_leaves_the_committed_files_alone(tmp_path):
    before = {p: p.read_bytes() for p in [ROOT / "README.md", *(ROOT / "notebooks").glob("*.ipynb")]}
    staged = stage(tmp_path / "src")
    assert staged == PAGES
    assert {p: p.read_bytes() for p in before} == before
    assert json.loads((tmp_path / "src" / "_toc.yml").read_text())["root"] == "README"


# ---------------------------------------------------------------- the built site in a browser

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


@pytest.fixture(scope="module")
def served(site):
    with serve(site) as base:
        yield base


@pytest.fixture(scope="module")
def reports(site, served, chromium):
    """Every page of the course, loaded once; two of them photographed for people to look at."""
    shots = {"README": "site-front-page.png", "notebooks/01_fgsm": "site-01_fgsm.png"}
    out = artifacts_dir()
    return {page: load(chromium, f"{served}/{page}.html", screenshot=out / shots[page] if page in shots else None)
            for page in PAGES}


def test_the_front_page_is_the_readme(site):
    index = (site / "index.html").read_text()
    assert "README.html" in index  # the index redirects to the front page
    assert (site / "README.html").is_file()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_without_console_errors(reports, page):
    r = reports[page]
    assert r.errors == [], f"{page}: {r.errors}"
    assert len(r.text) > 500, f"{page} shows almost nothing"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_every_notebook_page_shows_its_figures(reports, page):
    r = reports[page]
    shown = [i for i in r.images if i["output"]]
    assert len(shown) >= _figures(_committed(page)), f"{page}: {len(shown)} figures shown"
    assert r.broken_images == [], f"{page}: images not decoded or of zero size: {r.broken_images}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_every_notebook_page_has_a_colab_button_and_a_download_link(site, reports, page):
    where, name = home(), page.split("/")[-1]
    links = reports[page].links
    assert where.colab_url(f"notebooks/{name}.ipynb") in links, f"{page}: no launch button for {where.repository}"
    download = [u for u in links if urlsplit(u).path.endswith(f"/_sources/notebooks/{name}.ipynb")]
    assert download, f"{page}: no download link"
    nb = json.loads((site / "_sources" / "notebooks" / f"{name}.ipynb").read_text())
    assert nb["cells"], "the download is a notebook"


def test_every_internal_link_resolves(site, served, reports):
    broken = []
    for page, r in reports.items():
        for url in r.links:
            if not url.startswith(served):
                continue
            parts = urlsplit(url)
            target = site / parts.path.lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page} → {parts.path}")
            elif parts.fragment and target.suffix == ".html" \
                    and f'id="{parts.fragment}"' not in target.read_text(errors="replace"):
                broken.append(f"{page} → {parts.path}#{parts.fragment} (no such anchor)")
    assert broken == []
    course = [u for u in reports["README"].links if u.startswith(f"{served}/notebooks/")]
    assert len({urlsplit(u).path for u in course}) == len(NOTEBOOK_PAGES), "the front page links every notebook"


def test_math_is_typeset(reports):
    for page in ("notebooks/01_fgsm", "notebooks/09_certified_robustness"):
        assert reports[page].math >= 20, f"{page}: {reports[page].math} formulas typeset"
    assert all(r.math_errors == 0 for r in reports.values()), {p: r.math_errors for p, r in reports.items()}


def test_the_slider_page_shows_a_static_frame_and_the_row_of_frames(reports, served, chromium):
    r = reports["notebooks/01_fgsm"]
    screenshot_at(chromium, f"{served}/notebooks/01_fgsm.html", ".course-static-widget",
                  artifacts_dir() / "site-01_fgsm-slider.png")
    assert "An interactive widget (ε = 0.1" in r.text and "the last frame it drew" in r.text
    assert "the prediction first changes at ε" in r.text or "the prediction survives all five ε" in r.text
    assert r.broken_images == []


def test_screenshots_were_saved(reports):
    for name in ("site-front-page.png", "site-01_fgsm.png", "site-01_fgsm-slider.png"):
        shot = artifacts_dir() / name
        assert shot.is_file() and shot.stat().st_size > 10_000, shot


def test_a_broken_image_link_is_caught(site, chromium, tmp_path):
    """The figure check fails when a figure's file is missing (the check itself can fail)."""
    broken_site = tmp_path / "html"
    shutil.copytree(site, broken_site)
    page = broken_site / "notebooks" / "02_pgd.html"
    html = page.read_text()
    first = html.index('src="../_images/')
    page.write_text(html[:first] + 'src="../_images/missing-figure.png"' + html[html.index('"', first + 5) + 1:])
    with serve(broken_site) as base:
        r = load(chromium, f"{base}/notebooks/02_pgd.html")
    assert any("missing-figure.png" in src for src in r.broken_images)
    assert any("404" in e and "missing-figure.png" in e for e in r.errors)


def test_the_pages_workflow_installs_the_site_extra_and_runs_the_documented_command():
    import tomllib

    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    steps = [s.get("run", "") for s in workflow["jobs"]["build"]["steps"]]
    site_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["site"]
    assert all(any(f'"{req}"' in run for run in steps) for req in site_extra), (site_extra, steps)
    assert "python -m course_utils site --out _site" in steps
    upload = next(s for s in workflow["jobs"]["build"]["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_site/html"
    assert "python -m course_utils site" in (ROOT / "README.md").read_text()
