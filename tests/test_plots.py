"""The lessons' figure helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from aigc_course.plots import image_grid  # noqa: E402


def test_image_grid_draws_one_row_per_batch_with_its_labels():
    rows = [torch.rand(6, 1, 28, 28), torch.rand(6, 28, 28)]  # with and without the channel
    figure = image_grid(rows, row_labels=["a", "b"], column_titles=list("uvwxyz"), title="t")
    axes = figure.axes
    assert len(axes) == 12
    assert [ax.get_ylabel() for ax in axes[::6]] == ["a", "b"]
    assert [ax.get_title() for ax in axes[:6]] == list("uvwxyz")
    shown = axes[7].images[0].get_array()
    assert shown.shape == (28, 28)
    torch.testing.assert_close(torch.as_tensor(shown.data), rows[1][1])
    assert axes[0].images[0].get_clim() == (0.0, 1.0) and figure._suptitle.get_text() == "t"
    plt.close(figure)


def test_image_grid_takes_a_column_count_and_its_own_range():
    figure = image_grid([torch.arange(4 * 9.0).reshape(4, 3, 3) * 10], columns=3, scale=None)
    assert len(figure.axes) == 3
    low, high = figure.axes[2].images[0].get_clim()
    assert (low, high) == pytest.approx((180.0, 260.0))  # the image's own range
    plt.close(figure)


def test_image_grid_lays_one_batch_out_in_rows():
    figure = image_grid(torch.rand(25, 1, 8, 8), columns=10)
    assert len(figure.axes) == 30  # three rows of ten, the last one five short
    assert sum(bool(ax.images) for ax in figure.axes) == 25
    plt.close(figure)
