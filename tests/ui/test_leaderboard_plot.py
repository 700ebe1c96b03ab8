"""The Leaderboard's ratings plot: every model's name is drawn below the band at the top of
the image where the page floats the plot's label (which hid the best model's name)."""

from __future__ import annotations

from types import SimpleNamespace

from matplotlib.backends.backend_agg import FigureCanvasAgg

from ftapp.ui.leaderboard_tab import _plot

LABEL_BAND_PX = 32  # Gradio's block label over the plot's top-left corner (the image is 1:1)


def name_tops(n_models: int) -> dict[str, float]:
    """Each model's name on the plot of n models: pixels from the image's top to its top."""
    ratings = [SimpleNamespace(model=f"model-{i}", rating=1000.0 + 40 * i,
                               lower=960.0 + 40 * i, upper=1300.0 + 40 * i)
               for i in reversed(range(n_models))]  # fmt: skip
    figure = _plot(SimpleNamespace(ratings=ratings))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    (axes,) = figure.axes
    return {label.get_text(): figure.bbox.height - label.get_window_extent(
        canvas.get_renderer()).y1 for label in axes.get_yticklabels()}  # fmt: skip


def test_every_model_name_is_clear_of_the_plot_label():
    for n_models in (2, 3, 12):
        tops = name_tops(n_models)
        assert set(tops) == {f"model-{i}" for i in range(n_models)}
        assert min(tops.values()) >= LABEL_BAND_PX, tops
