"""Static maps and hydrographs as PNG (matplotlib, Agg backend): for the demo, reports and headless runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_path
from .errors import GeometryError
from .network import RiverNetwork

__all__ = ["plot_discharge_map", "plot_hydrographs"]


def _figure(**kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(**kwargs)


def plot_discharge_map(path: str | Path, network: RiverNetwork, discharge: Any, *, times: list[int] | None = None,
                       gauges: Any = None, title: str = "") -> Path:
    """Map of the reaches coloured by discharge: the maximum over the run, plus one panel per step in ``times``.

    Line width grows with log discharge, so the network reads like a river map.
    """
    if network.geometry is None:
        raise GeometryError("the network has no geometries to draw.", path=network.source.path,
                            hint="Read it from a file with line geometries.")
    import shapely
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    values = np.asarray(discharge.values)
    index = {int(r): i for i, r in enumerate(discharge.ids)}
    order = np.array([index[int(r)] for r in network.ids])
    panels = [("maximum over the run", values.max(axis=1)[order])]
    for t in times or []:
        stamp = np.datetime_as_string(discharge.time[t], unit="h").replace("T", " ")
        panels.append((f"{stamp}", values[order, t]))
    lines = [np.asarray(shapely.get_coordinates(g))[:, :2] for g in np.asarray(network.geometry)]
    vmax = max(float(p[1].max()) for p in panels)
    vmin = max(vmax * 1e-3, 1e-3)
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))
    allxy = np.concatenate(lines)
    span = np.ptp(allxy, axis=0)
    aspect = float(span[1] / span[0]) if span[0] > 0 else 1.0
    plt, fig = _figure(figsize=(3.6 * len(panels) + 1.2, 3.6 * min(max(aspect, 0.4), 2.0) + 0.8),
                       layout="constrained")
    for k, (label, q) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        widths = 0.6 + 3.4 * np.clip(np.log10(np.maximum(q, vmin) / vmin) / np.log10(norm.vmax / vmin), 0, 1)
        coll = LineCollection(lines, array=np.maximum(q, vmin), cmap="viridis_r", norm=norm, linewidths=widths)
        ax.add_collection(coll)
        ax.autoscale_view()
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if gauges is not None:
            for pos, name in zip(gauges.positions, gauges.ids):
                xy = lines[pos][-1]
                ax.plot(*xy, marker="^", color="crimson", markersize=7, markeredgecolor="k")
                ax.annotate(name, xy, xytext=(4, 4), textcoords="offset points", fontsize=7)
    fig.colorbar(coll, ax=fig.axes, shrink=0.8, label="discharge [m$^3$ s$^{-1}$]")
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def plot_hydrographs(path: str | Path, discharge: Any, gauges: Any, *, metrics: dict | None = None,
                     title: str = "") -> Path:
    """Simulated (and observed, where there are observations) hydrographs at each gauge, one panel each."""
    times = discharge.time
    observed = gauges.observed_on(times)
    n = len(gauges.ids)
    plt, fig = _figure(figsize=(10, 2.6 * n))
    for k, (gid, name, reach) in enumerate(zip(gauges.ids, gauges.names, gauges.reach_ids)):
        ax = fig.add_subplot(n, 1, k + 1)
        if observed is not None:
            ax.plot(times, observed[k], color="k", lw=1.0, label="observed")
        ax.plot(times, discharge.series(reach), color="tab:blue", lw=1.1, label="simulated")
        label = f"{gid}" + (f" {name}" if name != str(gid) else "") + f" (reach {reach})"
        if metrics and gid in metrics:
            m = metrics[gid]
            label += f"   NSE {m['nse']:.2f}  KGE {m['kge']:.2f}  bias {m['pbias']:+.0f} %"
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("m$^3$ s$^{-1}$")
        if k == 0:
            ax.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
