"""The job page's loss chart: training loss per step, mean loss per epoch, eval loss, and token
accuracy on a second axis. A pure function of stored rows, so every tab draws the same curve."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from training.core.messages import say

LOSS_COLOUR = "#1a73e8"
EPOCH_COLOUR = "#0b3d91"
EVAL_COLOUR = "#e8710a"
ACCURACY_COLOUR = "#188038"


def loss_figure(steps: Sequence, evals: Sequence = (), snapshots: Sequence = ()) -> go.Figure:
    """``steps`` have .step, .loss, .token_accuracy; ``evals`` .step, .eval_loss,
    .eval_token_accuracy; ``snapshots`` .step, .epoch, .mean_loss."""
    figure = go.Figure()
    if steps:
        x = [s.step for s in steps]
        alone = len(x) == 1  # a one-point line draws nothing: show the point
        figure.add_trace(go.Scatter(x=x, y=[s.loss for s in steps], name=say("chart.training_loss"),
                                    mode="lines+markers" if alone else "lines",
                                    line={"color": LOSS_COLOUR, "width": 1.5},
                                    marker={"size": 8}))
        figure.add_trace(go.Scatter(x=x, y=[s.token_accuracy for s in steps], name=say("chart.accuracy"),
                                    mode="lines+markers" if alone else "lines", yaxis="y2",
                                    line={"color": ACCURACY_COLOUR, "width": 1, "dash": "dot"}))
    if snapshots:
        figure.add_trace(go.Scatter(
            x=[s.step for s in snapshots], y=[s.mean_loss for s in snapshots],
            name=say("chart.epoch_loss"), mode="lines+markers",
            text=[say("chart.epoch", epoch=s.epoch) for s in snapshots],
            line={"color": EPOCH_COLOUR, "width": 2.5}, marker={"size": 8}))
    if evals:
        figure.add_trace(go.Scatter(x=[e.step for e in evals], y=[e.eval_loss for e in evals],
                                    name=say("chart.eval_loss"), mode="lines+markers",
                                    line={"color": EVAL_COLOUR, "width": 2}))
        figure.add_trace(go.Scatter(
            x=[e.step for e in evals], y=[e.eval_token_accuracy for e in evals],
            name=say("chart.eval_accuracy"), mode="lines+markers", yaxis="y2",
            line={"color": EVAL_COLOUR, "width": 1, "dash": "dot"}))
    figure.update_layout(
        height=380,
        margin={"l": 50, "r": 50, "t": 30, "b": 40},
        xaxis={"title": {"text": say("chart.step")}, "rangemode": "tozero"},
        yaxis={"title": {"text": say("chart.loss")}, "rangemode": "tozero"},
        yaxis2={"title": {"text": say("chart.accuracy")}, "overlaying": "y", "side": "right",
                "range": [0, 1], "showgrid": False},
        legend={"orientation": "h", "y": 1.12},
        hovermode="x unified",
        template="plotly_white",
    )
    if not steps:
        figure.add_annotation(text=say("chart.waiting"), showarrow=False,
                              x=0.5, y=0.5, xref="paper", yref="paper")
    return figure
