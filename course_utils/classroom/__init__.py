"""The course's tooling around the notebooks: the results JSON a notebook leaves (`results`), running
notebooks headless (`runner`), the seed sweep (`seeds`), student versions (`student`), grading
submissions (`grading`: what it runs of a submission in `submission`, each submission in a bubblewrap
`sandbox`, the course's checks on the student's functions through `remote`) and the command line (`cli`).
Only `remote` and the checks it serves use torch, and only when called.

Importing this package imports none of them.
"""
