"""The course's tooling around the notebooks, none of it torch: the results JSON a notebook leaves
(`results`), running notebooks headless (`runner`), the seed sweep (`seeds`), student versions
(`student`), grading submissions (`grading`) and the command line (`cli`).

Importing this package imports none of them.
"""
