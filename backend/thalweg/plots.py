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
        stamp = np.datetime_as_string(discharge.time[t], unit="m").replace("T", " ")
        panels.append((f"{stamp} UTC", values[order, t]))
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
        if k == 0:
            _scale_bar(ax, allxy, network.crs)
    fig.colorbar(coll, ax=fig.axes, shrink=0.8, label="discharge [m$^3$/s] (log scale)")
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def _scale_bar(ax, xy: np.ndarray, crs: Any) -> None:
    """A scale bar of a round length (about a fifth of the map's width) in the lower right, for maps in metres."""
    try:
        from pyproj import CRS

        unit = CRS.from_user_input(crs).axis_info[0].unit_name if crs is not None else None
    except Exception:  # an unknown CRS: no scale rather than a wrong one
        unit = None
    if unit not in ("metre", "meter"):
        return
    (x0, y0), (x1, _) = xy.min(axis=0), xy.max(axis=0)
    target = (x1 - x0) / 5
    length = 10 ** np.floor(np.log10(target))
    length *= next(m for m in (5, 2, 1) if m * length <= target)
    ax.plot([x1 - length, x1], [y0, y0], color="k", lw=2.5, solid_capstyle="butt")
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.annotate(label, (x1 - length / 2, y0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)


def _signed(value: float, digits: int) -> str:
    """'+3 %', '-10 %', and '0 %' rather than '-0 %' when a small negative value rounds to zero."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


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
            label += f"   NSE {m['nse']:.2f}  KGE {m['kge']:.2f}  PBIAS {_signed(m['pbias'], 0)} % (+: too low)"
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("discharge [m$^3$/s]")
        ax.set_ylim(bottom=0)  # discharge axes start at zero (matplotlib's margin would show negative flows)
        ax.set_xlim(times[0], times[-1])
        ax.grid(True, lw=0.3, alpha=0.5)
        if k == 0:
            ax.legend(loc="upper right", fontsize=8)
        if k == n - 1:
            ax.set_xlabel("time (UTC, end of each step)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
