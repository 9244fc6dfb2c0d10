"""`python -m course_utils run | seeds | student | grade`: the command line lives in `classroom.cli`."""
from .classroom.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
