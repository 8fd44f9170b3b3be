"""Generative AI from the math up: the course's helper package.

Importing the package does nothing else (no downloads, no prints, no global state) except, inside
IPython/Jupyter, one display hook: the course's own errors (:class:`aigc_course.errors.CourseError`)
show as their message and fix rather than a page of traceback (``AIGC_DEBUG=1`` turns it off).
Submodules are imported where they are used, e.g. ``from aigc_course import runtime``.

The package is built in layers; a module imports only from its layer and those below. The list
of layers, why they are so, and where a new model, trainer, check or command goes are in
docs/ARCHITECTURE.md (the one place the list is written); tests/test_architecture.py reads it
there and holds the code to it.
"""

__version__ = "0.1.0"

#: Where the course lives. The Colab set-up cell of every notebook, the "Open in Colab" badges and
#: the README are checked against these three values by the tests (``tests/test_notebooks.py``).
GITHUB_REPOSITORY = "aigc-course/aigc-course"
GITHUB_BRANCH = "main"
REPOSITORY_URL = f"https://github.com/{GITHUB_REPOSITORY}"

#: The run profiles, smallest first (:mod:`aigc_course.runtime` says what each means). Kept here,
#: free of imports, so that ``aigc-course`` parses its options without loading PyTorch.
PROFILE_NAMES = ("smoke", "cpu", "gpu")

from aigc_course.errors import install_notebook_handler  # noqa: E402

install_notebook_handler()
