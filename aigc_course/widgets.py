"""Interactive widgets that the lessons display in one call, so that a lesson shows the idea and
not the plumbing. Only widgets that ipywidgets 7.7 (Google Colab) and 8 (JupyterLab 4) share.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import ipywidgets as widgets

from aigc_course.i18n import _
from aigc_course.models.gpt import GPT, Tokenizer, sample_text

#: A control's style that shows its whole description (ipywidgets cuts long ones by default).
FULL_LABEL = {"description_width": "initial"}


def gpt_sampler(model: GPT, tokenizer: Tokenizer, prompt: str = "KING HENRY:") -> widgets.VBox:
    """Lesson 08's sampler: a prompt, temperature, top-k, top-p and length, and a *generate* button
    that prints a new continuation (seeded by the clock, so each press differs)."""
    prompt_box = widgets.Text(value=prompt, description=_("prompt"), style=FULL_LABEL)
    temperature = widgets.FloatSlider(
        value=0.8,
        min=0.1,
        max=2.0,
        step=0.1,
        description=_("temperature"),
        style=FULL_LABEL,
    )
    top_k = widgets.IntSlider(
        value=0, min=0, max=40, description=_("top-k (0: off)"), style=FULL_LABEL
    )
    top_p = widgets.FloatSlider(
        value=1.0,
        min=0.1,
        max=1.0,
        step=0.05,
        description=_("top-p (1: off)"),
        style=FULL_LABEL,
    )
    length = widgets.IntSlider(
        value=200,
        min=20,
        max=600,
        step=20,
        description=_("characters"),
        style=FULL_LABEL,
    )
    button = widgets.Button(description=_("generate"))
    output = widgets.Output()

    def on_generate(_button) -> None:
        output.clear_output()
        with output:
            try:
                print(
                    sample_text(
                        model,
                        tokenizer,
                        prompt_box.value,
                        tokens=length.value,
                        temperature=temperature.value,
                        top_k=top_k.value or None,
                        top_p=top_p.value if top_p.value < 1.0 else None,
                        seed=int(time.time()),
                    )
                )
            except ValueError as error:
                print(_("cannot generate: {error}").format(error=error))

    button.on_click(on_generate)
    return widgets.VBox([prompt_box, temperature, top_k, top_p, length, button, output])


def live_figure(draw: Callable[..., object], **controls) -> widgets.VBox:
    """Controls (widgets with a ``value``) above a figure that ``draw(**values)`` redraws whenever
    one of them changes.

    ``draw`` returns a matplotlib figure; it is rendered to a PNG and shown in an image widget,
    whose value each redraw replaces whole (no clearing of an output area), so the last change
    always wins, however fast the changes come. A value ``draw`` cannot take (an empty sentence)
    shows one line saying so under the last good figure; never a traceback."""
    import matplotlib.pyplot as plt

    image = widgets.Image(format="png")
    note = widgets.HTML()

    def redraw(_change=None) -> None:
        values = {name: control.value for name, control in controls.items()}
        try:
            figure = draw(**values)
        except Exception as error:  # a widget shows a line, never a traceback
            reason = _escape(str(error) or type(error).__name__)
            note.value = "<i>" + _("cannot draw this: {error}").format(error=reason) + "</i>"
            return
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        image.value = buffer.getvalue()
        note.value = ""

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([*controls.values(), note, image])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
