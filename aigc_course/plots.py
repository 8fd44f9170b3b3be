"""Figures the lessons draw again and again, in one call each, so that a lesson cell shows the idea
and not the plotting."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def image_grid(
    rows: Sequence[torch.Tensor] | torch.Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
    columns: int | None = None,
    scale: tuple[float, float] | None = (0.0, 1.0),
    size: float = 1.1,
) -> plt.Figure:
    """Images in a grid: one row per entry of ``rows``, each a batch ``(N, 1, H, W)`` or
    ``(N, H, W)`` of grey images (the first ``columns`` of them, default all of the first row's);
    or one batch, laid out in rows of ``columns`` (default 10).

    ``row_labels`` name the rows (at their left), ``column_titles`` the columns (above the first
    row), ``title`` the figure. Pixel values map to grey through ``scale`` (``(0, 1)``: pixel
    probabilities and images; None: each image's own range), dark for high values as on paper.
    Each image takes ``size`` inches. Returns the figure (shown at the end of the cell)."""
    if isinstance(rows, torch.Tensor):  # one batch: rows of `columns` images
        columns = columns or 10
        rows = [rows[start : start + columns] for start in range(0, len(rows), columns)]
    batches = [row.detach().cpu().reshape(len(row), *row.shape[-2:]) for row in rows]
    columns = columns or len(batches[0])
    fig, axes = plt.subplots(
        len(batches),
        columns,
        figsize=(size * columns, size * len(batches) + (0.4 if title else 0.1)),
        squeeze=False,
    )
    vmin, vmax = scale if scale is not None else (None, None)
    for row, (batch, row_axes) in enumerate(zip(batches, axes, strict=True)):
        for column, ax in enumerate(row_axes):
            if column < len(batch):
                ax.imshow(batch[column], cmap="gray_r", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if row == 0 and column_titles is not None and column < len(column_titles):
                ax.set_title(column_titles[column], fontsize=8)
        if row_labels is not None:
            row_axes[0].set_ylabel(row_labels[row], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
