"""The Leaderboard's ratings plot and table: every model's name is drawn below the band at the
top of the image where the page floats the plot's label (which hid the best model's name); a
model with fewer votes than the minimum shows "not enough votes", not an interval that spans
the scale."""

from __future__ import annotations

from types import SimpleNamespace

from matplotlib.backends.backend_agg import FigureCanvasAgg

from ftapp.ui.leaderboard_tab import _interval, _plot

LABEL_BAND_PX = 32  # Gradio's block label over the plot's top-left corner (the image is 1:1)


def name_tops(n_models: int) -> dict[str, float]:
    """Each model's name on the plot of n models: pixels from the image's top to its top."""
    ratings = [SimpleNamespace(model=f"model-{i}", rating=1000.0 + 40 * i, n_votes=20,
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


def test_too_few_votes_show_no_interval():
    few = SimpleNamespace(model="new", rating=1180.0, n_votes=3, lower=-74.0, upper=2000.0)
    enough = SimpleNamespace(model="base", rating=1000.0, n_votes=12, lower=940.0, upper=1061.4)
    assert _interval(few) == "not enough votes (3 of 10)"
    assert _interval(enough) == "940 to 1,061"
    figure = _plot(SimpleNamespace(ratings=[few, enough]))
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.get_yticklabels()] == ["base", "new (too few votes)"]
    low, high = axes.get_xlim()
    assert low > 900 and high < 1300  # the axis is not stretched to [-74, 2000]
