"""Edit a notebook as plain text: cells become `# %% [kind] {metadata}` blocks, and back.

    python tools/nbtext.py out notebooks/04_adversarial_training.ipynb 04.txt   # notebook → text
    python tools/nbtext.py in 04.txt notebooks/04_adversarial_training.ipynb    # text → notebook

Going back keeps the notebook-level metadata of the target file (headline, claims, kernel) and
drops every output: run `python tools/refresh_outputs.py NN` afterwards so that the committed
notebook carries the outputs of a `fast` run again. A metadata line may carry a whole JSON object
(`{"tags": ["parameters"]}`, `{"course": {"exercise": "fgsm", "points": 2}}`).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

MARK = re.compile(r"^# %% \[(markdown|code|raw)\](?: (\{.*\}))?$")


def to_text(nb: nbformat.NotebookNode) -> str:
    blocks = []
    for cell in nb.cells:
        meta = {k: v for k, v in cell.metadata.items() if k in ("tags", "course")}
        head = f"# %% [{cell.cell_type}]" + (f" {json.dumps(meta, ensure_ascii=False)}" if meta else "")
        blocks.append(head + "\n" + cell.source.rstrip("\n"))
    return "\n\n".join(blocks) + "\n"


def from_text(text: str, template: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells, kind, meta, lines = [], None, {}, []

    def flush():
        if kind is None:
            return
        source = "\n".join(lines).strip("\n")
        make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell,
                "raw": nbformat.v4.new_raw_cell}[kind]
        cell = make(source)
        cell.metadata.update(meta)
        cells.append(cell)

    for line in text.splitlines():
        match = MARK.match(line)
        if match:
            flush()
            kind, meta, lines = match.group(1), json.loads(match.group(2) or "{}"), []
        else:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(metadata=template.metadata)
    nb.cells = cells
    return nb


if __name__ == "__main__":
    verb, src, dst = sys.argv[1:4]
    if verb == "out":
        Path(dst).write_text(to_text(nbformat.read(src, as_version=4)))
    elif verb == "in":
        template = nbformat.read(dst, as_version=4)
        nb = from_text(Path(src).read_text(), template)
        nbformat.validate(nb)
        nbformat.write(nb, dst)
    else:
        raise SystemExit("usage: nbtext.py out NOTEBOOK TEXT | in TEXT NOTEBOOK")
