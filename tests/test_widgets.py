"""The course's widgets work with both ipywidgets 7.7 (Google Colab) and 8 (JupyterLab 4).

``.ci/run`` runs this module and every notebook that uses widgets twice: once with the ipywidgets
the project installs (8), and once more with ``ipywidgets==7.7.1`` (``pytest -m widgets``, with
``AIGC_EXPECT_IPYWIDGETS=7.7.1`` so that the second run proves which version it had).
"""

from __future__ import annotations

import ast
import os
import warnings
from importlib import metadata

import ipywidgets
import nbformat
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.widgets

# What ipywidgets 7.7 and 8 both provide, with the same meaning (Colab's advice: stay on 7.7).
SHARED_WIDGETS = {
    "interact",
    "interactive",
    "interact_manual",
    "fixed",
    "FloatSlider",
    "IntSlider",
    "Dropdown",
    "Output",
    "HBox",
    "VBox",
    "Button",
    "Text",
    "Label",
    "Checkbox",
    "Layout",
    "HTML",
    "Image",
}
NOTEBOOKS = sorted(
    path
    for folder in ("notebooks", "solutions")
    for path in (ROOT / folder).glob("*.ipynb")
    if "ipywidgets" in path.read_text(encoding="utf-8")
)
# Where widgets are built: those notebooks, and the package's module of lesson widgets.
SOURCES = [*NOTEBOOKS, ROOT / "aigc_course" / "widgets.py"]


def code_of(path) -> list[str]:
    """The code of a notebook (one string per code cell) or of a Python file."""
    if path.suffix == ".py":
        return [path.read_text(encoding="utf-8")]
    notebook = nbformat.read(path, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def widget_calls(path):
    """Every ``widgets.Name(...)`` / ``ipywidgets.Name(...)`` use in the code of ``path``."""
    for source in code_of(path):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "ipywidgets":
                for alias in node.names:
                    yield alias.name, None
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in {"widgets", "ipywidgets"}
            ):
                yield node.attr, None
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"widgets", "ipywidgets"}
            ):
                yield node.func.attr, node


def test_the_lessons_use_widgets():
    names = {path.name for path in NOTEBOOKS}
    assert {"00_setup.ipynb", "01_entropy_kl.ipynb"} <= names
    assert "aigc_course.widgets" in (ROOT / "notebooks" / "08_gpt.ipynb").read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_notebooks_use_only_widgets_that_7_7_and_8_share(path):
    used = {name for name, _ in widget_calls(path)}
    assert used, f"{path.name} imports ipywidgets but uses none of it"
    assert used <= SHARED_WIDGETS, f"not in both ipywidgets 7.7 and 8: {used - SHARED_WIDGETS}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_widget_builds_with_its_arguments_under_this_ipywidgets(path):
    """Each ``widgets.X(keyword=literal, ...)`` of the notebook, built here: an argument this
    version does not know (traitlets warns of unrecognized arguments) fails the test."""
    built = 0
    for name, call in widget_calls(path):
        if call is None or name.startswith("interact") or call.args:
            continue
        try:
            kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
        except ValueError:
            continue  # a value computed at run time: the notebook run covers it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            widget = getattr(ipywidgets, name)(**kwargs)
        # ipykernel's own notice about its Comm class (with ipywidgets 7.7) is not about us.
        ours = [w for w in caught if "ipykernel.comm.Comm" not in str(w.message)]
        assert not ours, f"{name}({kwargs}): {[str(w.message) for w in ours]}"
        for key, value in kwargs.items():
            got = getattr(widget, key)
            if key == "style":  # a dict in, a Style widget out
                got = {style_key: getattr(got, style_key) for style_key in value}
            elif isinstance(value, list):  # options come back as a tuple
                got = list(got)
            assert got == value, (name, key, got, value)
        widget.close()
        built += 1
    if path.name in {"01_entropy_kl.ipynb", "widgets.py"}:
        assert built >= 2


def test_interactive_reruns_its_function_when_a_slider_moves():
    """What the lessons' ``interact`` calls rely on, in the installed version."""
    seen = []

    def record(x: float) -> None:
        seen.append(x)

    slider = ipywidgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.5, description="x")
    panel = ipywidgets.interactive(record, x=slider)
    assert seen in ([], [1.0])  # 8 calls the function when built, 7.7 when displayed
    slider.value = 1.5
    assert seen[-1] == 1.5 and panel.kwargs == {"x": 1.5}
    panel.close()


def test_the_ipywidgets_version_is_the_one_this_run_expects():
    expected = os.environ.get("AIGC_EXPECT_IPYWIDGETS")
    installed = metadata.version("ipywidgets")
    if expected is None:
        assert installed.split(".")[0] in {"7", "8"}, installed
    else:
        assert installed == expected


def test_the_gpt_sampler_writes_the_continuation(capsys):
    import torch

    from aigc_course.data import CharTokenizer
    from aigc_course.models.gpt import GPT, GPTConfig
    from aigc_course.widgets import gpt_sampler

    tokenizer = CharTokenizer.from_text("abcdefgh :\n")
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8
    )
    panel = gpt_sampler(GPT(config).eval(), tokenizer, prompt="abc")
    *_, length, button, _ = panel.children
    length.value = 20
    button.click()  # outside a kernel the Output widget does not capture: print reaches stdout
    written = capsys.readouterr().out.split("\r")[-1]  # after clear_output's escape codes
    assert written.startswith("abc") and written.endswith("\n")
    assert len(written) == 3 + 20 + 1, repr(written)  # the prompt, 20 characters, print's newline
    panel.children[0].value = "€"
    button.click()
    assert "cannot generate" in capsys.readouterr().out
    panel.close()


def test_a_live_figure_says_why_it_cannot_draw_and_the_last_change_wins():
    """Lesson 04's explorer: an emptied sentence is one line under the last good figure (no
    traceback), and however fast the sentence changes, the figure is the one of the last value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aigc_course.attention import sentence_attention
    from aigc_course.widgets import live_figure

    def draw(sentence: str, causal: bool):
        words, weights = sentence_attention(sentence, causal=causal)
        figure, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(weights, vmin=0, vmax=1)
        ax.set_title(" ".join(words))
        return figure

    sentence = ipywidgets.Text(value="the cat sat", continuous_update=False)
    causal = ipywidgets.Checkbox(value=False)
    panel = live_figure(draw, sentence=sentence, causal=causal)
    *_, note, picture = panel.children

    class Shown:  # the image's bytes (ipywidgets 8 holds a memoryview, 7.7 bytes)
        @property
        def value(self) -> bytes:
            return bytes(picture.value)

    image = Shown()
    first = image.value
    assert first.startswith(b"\x89PNG") and note.value == ""
    sentence.value = ""
    assert "cannot draw this: the sentence has no words" in note.value
    assert image.value == first, "the last good figure stays"
    for text in ("a b", "a b c", "the dog ran home"):  # quick replacements
        sentence.value = text
    fast = image.value
    sentence.value = "something else"
    sentence.value = "the dog ran home"
    assert note.value == "" and fast == image.value != first
    causal.value = True
    assert image.value != fast
    assert not plt.get_fignums(), "every drawn figure is closed (none piles up in the notebook)"
    panel.close()
