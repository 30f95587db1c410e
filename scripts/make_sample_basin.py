"""Build the bundled sample basin, the Cance (France), in resources/sample/ from the hydro-smash 1.3.0 wheel.

    .venv/bin/python scripts/make_sample_basin.py                    # downloads the wheel with pip
    .venv/bin/python scripts/make_sample_basin.py --wheel PATH.whl   # or reads one already downloaded

The wheel is read as a zip (smash is not installed). Steps, each one documented again in the README.md
written beside the data:

1. Clip smash's 1 km D8 flow directions of France (EPSG:2154) to the basin upstream of gauge V3524010,
   accumulate in numpy, snap the three gauges to the cell of closest accumulated area.
2. Vectorise channel cells (accumulation >= threshold) into reaches split at confluences and below gauges;
   write ``cance_rivers.gpkg`` (layers ``rivers`` with GEOGloWS v2 field names, ``catchments``, ``gauges``).
3. Aggregate the hourly precipitation grids to reach catchments and scale them by one runoff coefficient so
   that the runoff volume equals the observed outlet volume: a water balance to feed routing, NOT a
   rainfall-runoff model. Write ``cance_runoff.nc`` (river-route ``catchment_runoff``, m3 per step).
4. Write ``cance_gauges.csv`` and ``cance_qobs.csv`` (observed discharge over the same steps).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WHEEL_SPEC = "hydro-smash==1.3.0"
# Pinned so that pip fetches the same file on any machine (the data inside every platform's wheel is the same).
PIP_PINS = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311"]
DATASET = "smash/factory/dataset/"
CANCE = DATASET + "Cance/"
OUTLET_GAUGE = "V3524010"
GAUGE_NAMES = {"V3524010": "La Cance à Sarras"}  # smash documentation: "the Cance at Sarras"; others unknown
# smash D8 codes (smash docs, flwdir_convention): 1 = N, then clockwise to 8 = NW, as (d_row, d_col).
SMASH_D8 = {1: (-1, 0), 2: (-1, 1), 3: (0, 1), 4: (1, 1), 5: (1, 0), 6: (1, -1), 7: (0, -1), 8: (-1, -1)}
PRCP_TO_MM = 0.1          # the grids hold tenths of a millimetre (smash setup_Cance.yaml: prcp_conversion_factor)
DT_S = 3600
DEFAULT_THRESHOLD_KM2 = 2.0
SNAP_RADIUS = 2           # gauges may move up to 2 cells (2 km) to the cell of closest accumulated area
AREA_TOLERANCE = 0.10     # snapped drainage area vs official area
FIXED_GPKG_DATE = "2024-01-01T00:00:00Z"  # GeoPackage timestamps pinned so reruns give identical files


# ---------------------------------------------------------------------------------------------- wheel
def fetch_wheel(workdir: Path) -> Path:
    """Download the pinned hydro-smash wheel with pip into ``workdir``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *PIP_PINS, WHEEL_SPEC,
           "-d", str(workdir)]
    subprocess.run(cmd, check=True)
    wheels = sorted(workdir.glob("hydro_smash-1.3.0-*.whl"))
    if not wheels:
        sys.exit(f"pip download {WHEEL_SPEC} left no wheel in {workdir}; pass --wheel PATH instead")
    return wheels[0]


class Wheel:
    """Read-only access to the dataset files inside the wheel (a zip), without installing smash."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path)
        self.names = sorted(n for n in self.zip.namelist() if n.startswith(DATASET))
        if CANCE + "gauge_attributes.csv" not in self.names:
            sys.exit(f"{path}: no {CANCE}gauge_attributes.csv inside; is this the {WHEEL_SPEC} wheel?")

    def read(self, name: str) -> bytes:
        return self.zip.read(name)

    def raster(self, name: str):
        """Return (array [rows, cols], affine transform, crs, nodata) of a GeoTIFF member."""
        from rasterio.io import MemoryFile

        with MemoryFile(self.read(name)) as mem, mem.open() as ds:
            return ds.read(1), ds.transform, ds.crs, ds.nodata

    def data_digest(self) -> str:
        """sha256 over the names and bytes of the Cance files and the flow directions (platform-independent)."""
        h = hashlib.sha256()
        for n in self.names:
            if n.startswith(CANCE) or n == DATASET + "France_flwdir.tif":
                h.update(n.encode())
                h.update(self.read(n))
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------- grid
def d8_downstream(fd: np.ndarray) -> np.ndarray:
    """Flat index of the downstream cell of every cell of ``fd`` (smash codes), -1 where flow leaves the grid.

    Cells without a valid code (nodata) get -1 and so does a cell draining into one.
    """
    nrow, ncol = fd.shape
    code = np.where(np.isin(fd, list(SMASH_D8)), fd, 0).astype(np.int64)
    drow, dcol = np.array([(0, 0)] + [SMASH_D8[k] for k in range(1, 9)]).T
    rows, cols = np.indices(fd.shape)
    r2, c2 = rows + drow[code], cols + dcol[code]
    ok = (code > 0) & (r2 >= 0) & (r2 < nrow) & (c2 >= 0) & (c2 < ncol)
    down = np.where(ok, r2 * ncol + c2, -1).ravel()
    down[down >= 0] = np.where(code.ravel()[down[down >= 0]] > 0, down[down >= 0], -1)
    return down


def accumulate(down: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Flow accumulation (own cell included) by peeling sources level by level (Kahn), vectorised per level.

    Stops the script when some cells never become sources (a cycle: the D8 decoding is wrong).
    """
    acc = weight.astype(np.float64).copy()
    has_down = down >= 0
    indeg = np.bincount(down[has_down], minlength=down.size)
    front = np.flatnonzero(indeg == 0)
    done = 0
    while front.size:
        done += front.size
        d = down[front]
        keep = d >= 0
        np.add.at(acc, d[keep], acc[front[keep]])
        np.subtract.at(indeg, d[keep], 1)
        nxt = np.unique(d[keep])
        front = nxt[indeg[nxt] == 0]
    if done != down.size:
        sys.exit(f"flow directions contain a cycle through {down.size - done} cells; the D8 decoding is wrong")
    return acc


def jump_to_fixed_point(ptr: np.ndarray) -> np.ndarray:
    """Pointer jumping: follow ``ptr`` until every cell points at a fixed point (log2(path length) passes)."""
    ptr = ptr.copy()
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            return ptr
        ptr = nxt


def snap_gauge(acc_km2, row, col, area_km2, allowed, radius=SNAP_RADIUS):
    """Cell within ``radius`` cells of (row, col) whose accumulated area is closest to ``area_km2``.

    Ties go to the nearer cell. Returns (row, col, accumulated km2).
    """
    best = None
    for r in range(row - radius, row + radius + 1):
        for c in range(col - radius, col + radius + 1):
            if 0 <= r < acc_km2.shape[0] and 0 <= c < acc_km2.shape[1] and allowed[r, c]:
                key = (abs(acc_km2[r, c] - area_km2), (r - row) ** 2 + (c - col) ** 2)
                if best is None or key < best[0]:
                    best = (key, r, c)
    if best is None:
        sys.exit(f"no allowed cell within {radius} cells of row {row}, col {col}")
    return best[1], best[2], float(acc_km2[best[1], best[2]])


def clip_basin(fd_full, transform, gauges):
    """Window around the outlet gauge, grown until the basin does not touch its border.

    Returns a dict with the window, its accumulation, the basin mask and the snapped gauge cells.
    """
    res = transform.a
    x0, y0 = transform.c, transform.f
    out = gauges[gauges.code == OUTLET_GAUGE].iloc[0]
    grow, gcol = int((y0 - out.y) // res), int((out.x - x0) // res)
    half = 40
    while True:
        r0, c0 = max(grow - half, 0), max(gcol - half, 0)
        fd = fd_full[r0:grow + half + 1, c0:gcol + half + 1]
        down = d8_downstream(fd)
        acc_km2 = (accumulate(down, np.isin(fd, list(SMASH_D8)).ravel()) * res * res / 1e6).reshape(fd.shape)
        valid = np.isin(fd, list(SMASH_D8))
        orow, ocol, _ = snap_gauge(acc_km2, grow - r0, gcol - c0, float(out.area), valid)
        outlet = orow * fd.shape[1] + ocol
        ptr = np.where(down >= 0, down, np.arange(down.size))
        ptr[outlet] = outlet
        mask = (jump_to_fixed_point(ptr) == outlet).reshape(fd.shape)
        touches = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        if not touches:
            break
        if half > max(fd_full.shape):
            sys.exit(f"the basin of {OUTLET_GAUGE} touches the edge of France_flwdir.tif")
        half *= 2
    snapped = {}
    for g in gauges.itertuples():
        r, c = int((y0 - g.y) // res) - r0, int((g.x - x0) // res) - c0
        snapped[g.code] = (orow, ocol, float(acc_km2[orow, ocol])) if g.code == OUTLET_GAUGE else \
            snap_gauge(acc_km2, r, c, float(g.area), mask)
    wx0, wy0 = x0 + c0 * res, y0 - r0 * res
    return {"fd": fd, "down": down, "acc_km2": acc_km2, "mask": mask, "r0": r0, "c0": c0,
            "x0": wx0, "y0": wy0, "res": res, "snapped": snapped}


# ---------------------------------------------------------------------------------------------- reaches
def build_reaches(clip, threshold_km2):
    """Cut channel cells into reaches; label every basin cell with the reach it drains to directly.

    Returns a dict of per-cell arrays (basin cells only, compact index 0..n-1) and per-reach arrays.
    """
    fd, mask, res = clip["fd"], clip["mask"], clip["res"]
    ncol = fd.shape[1]
    cells = np.flatnonzero(mask.ravel())                  # window flat indices, row-major (deterministic)
    n = cells.size
    pos = np.full(mask.size, -1)
    pos[cells] = np.arange(n)
    down_w = clip["down"][cells]
    down = np.where(down_w >= 0, pos[np.maximum(down_w, 0)], -1)   # -1: the outlet (its downstream is outside)
    if (down < 0).sum() != 1:
        sys.exit("the clipped basin does not have exactly one outlet cell")
    acc = clip["acc_km2"].ravel()[cells]
    rows, cols = cells // ncol, cells % ncol
    gauge_cell = {code: pos[r * ncol + c] for code, (r, c, _) in clip["snapped"].items()}

    channel = acc >= threshold_km2
    for code, k in gauge_cell.items():
        if not channel[k]:
            sys.exit(f"gauge {code} snaps to a cell of {acc[k]:.0f} km2, below the {threshold_km2} km2 threshold")
    ch = np.flatnonzero(channel)
    ch_in = ch[down[ch] >= 0]
    n_up_ch = np.bincount(down[ch_in], minlength=n)
    below_gauge = np.zeros(n, bool)
    for k in gauge_cell.values():
        if down[k] >= 0:
            below_gauge[down[k]] = True
    head = channel & ((n_up_ch != 1) | below_gauge)

    # Reach of each channel cell: walk upstream (unique upstream channel cell) to the reach head.
    up_ptr = np.arange(n)
    up_ptr[down[ch_in]] = ch_in
    up_ptr[head | ~channel] = np.flatnonzero(head | ~channel)
    heads = np.flatnonzero(head)
    heads = heads[np.argsort(cells[heads], kind="stable")]        # reaches numbered north-west first
    reach_of_head = np.full(n, -1)
    reach_of_head[heads] = np.arange(heads.size)
    reach = np.where(channel, reach_of_head[jump_to_fixed_point(up_ptr)], -1)
    # Catchment of each cell: follow flow to the first channel cell.
    dn_ptr = np.where((down >= 0) & ~channel, down, np.arange(n))
    catchment = reach[jump_to_fixed_point(dn_ptr)]
    if (catchment < 0).any():
        sys.exit("some basin cells reach no channel cell; this cannot happen in a tree, check the clip")

    nr = heads.size
    order = np.lexsort((acc[ch], reach[ch]))                  # cells of each reach, upstream to downstream
    ch_sorted = ch[order]
    starts = np.searchsorted(reach[ch_sorted], np.arange(nr))
    ends = np.append(starts[1:], ch_sorted.size)
    last = ch_sorted[ends - 1]
    ds_reach = np.where(down[last] >= 0, reach[np.maximum(down[last], 0)], -1)
    xc = clip["x0"] + (cols + 0.5) * res
    yc = clip["y0"] - (rows + 0.5) * res
    return {"n": n, "rows": rows + clip["r0"], "cols": cols + clip["c0"], "xc": xc, "yc": yc, "down": down,
            "acc_km2": acc, "channel": channel, "reach": reach, "catchment": catchment, "heads": heads,
            "ds_reach": ds_reach, "cells_sorted": ch_sorted, "starts": starts, "ends": ends, "last": last,
            "gauge_cell": gauge_cell, "fd": fd.ravel()[cells], "res": res}


def strahler(ds_reach: np.ndarray, area_last: np.ndarray) -> np.ndarray:
    """Strahler order over reaches; visits reaches by increasing drainage area (upstream before downstream)."""
    nr = ds_reach.size
    order = np.ones(nr, np.int64)
    top = np.zeros(nr, np.int64)      # highest order among a reach's upstream reaches
    count = np.zeros(nr, np.int64)    # how many upstream reaches have that order
    for i in np.argsort(area_last, kind="stable"):
        if top[i] > 0:
            order[i] = top[i] + 1 if count[i] >= 2 else top[i]
        d = ds_reach[i]
        if d >= 0:
            if order[i] > top[d]:
                top[d], count[d] = order[i], 1
            elif order[i] == top[d]:
                count[d] += 1
    return order


def reach_geometry(net):
    """LineStrings through cell centres (to the downstream reach's first cell), geodesic lengths, polygons."""
    import shapely
    from pyproj import Geod, Transformer

    res = net["res"]
    lines = []
    for i in range(net["heads"].size):
        seq = net["cells_sorted"][net["starts"][i]:net["ends"][i]]
        xs, ys = list(net["xc"][seq]), list(net["yc"][seq])
        d = net["ds_reach"][i]
        if d >= 0:
            h = net["heads"][d]
            xs.append(net["xc"][h])
            ys.append(net["yc"][h])
        else:  # the outlet reach ends at the outlet cell's edge, in its D8 direction
            dr, dc = SMASH_D8[int(net["fd"][seq[-1]])]
            xs.append(xs[-1] + 0.5 * res * dc)
            ys.append(ys[-1] - 0.5 * res * dr)
        lines.append(shapely.linestrings(np.column_stack([xs, ys])))
    to_ll = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    geod = Geod(ellps="GRS80")
    length = np.array([geod.line_length(*to_ll.transform(*np.asarray(ln.coords).T)) for ln in lines])
    half = res / 2
    boxes = shapely.box(net["xc"] - half, net["yc"] - half, net["xc"] + half, net["yc"] + half)
    polys = [shapely.union_all(boxes[net["catchment"] == i]) for i in range(net["heads"].size)]
    polys = [p if p.geom_type == "MultiPolygon" else shapely.MultiPolygon([p]) for p in polys]
    return lines, length, polys


# ---------------------------------------------------------------------------------------------- forcing
def read_precipitation(wheel: Wheel, net, transform_fd):
    """Hourly precipitation [mm] on the basin cells, shape [T, n_cells], and the step END times.

    smash reads the file stamped t for the step ending at t (``_read_prcp``: dates start_time + dt ...).
    Missing hours are filled with the mean of the hours before and after; they are returned by name.
    """
    import pandas as pd

    names = [n for n in wheel.names if n.startswith(CANCE + "prcp/") and n.endswith(".tif")]
    stamps = pd.to_datetime([re.search(r"\d{12}", os.path.basename(n)).group() for n in names],
                            format="%Y%m%d%H%M")
    srt = np.argsort(stamps.values, kind="stable")
    names, stamps = [names[i] for i in srt], stamps[srt]
    if stamps.has_duplicates:
        sys.exit(f"{wheel.path}: several precipitation files share a time stamp")
    ends = pd.date_range(stamps[0], stamps[-1], freq=f"{DT_S}s")
    grids = np.full((ends.size, net["n"]), np.nan)
    pr = pc = None
    for name, t in zip(names, stamps):
        arr, tr, crs, nodata = wheel.raster(name)
        if pr is None:  # map basin cells onto this grid once; it must share the flow directions' lattice
            orow = (transform_fd.f - tr.f) / transform_fd.a     # this grid's origin in flow-direction cells
            ocol = (tr.c - transform_fd.c) / transform_fd.a
            if tr.a != transform_fd.a or orow != round(orow) or ocol != round(ocol) or crs.to_epsg() != 2154:
                sys.exit(f"{name}: grid not aligned with France_flwdir.tif ({tr}); cell weights would be needed")
            pr, pc = net["rows"] - int(round(orow)), net["cols"] - int(round(ocol))
            first = (tr, arr.shape)
            if pr.min() < 0 or pc.min() < 0 or pr.max() >= arr.shape[0] or pc.max() >= arr.shape[1]:
                sys.exit(f"{name}: the basin is not inside the precipitation grid")
        if (tr, arr.shape) != first:
            sys.exit(f"{name}: grid differs from the first precipitation file")
        v = arr[pr, pc].astype(np.float64)
        if nodata is not None and (v == nodata).any() or (v < 0).any():
            sys.exit(f"{name}: no-data or negative precipitation on {(v == nodata).sum()} basin cells")
        grids[ends.get_loc(t)] = v * PRCP_TO_MM
    missing = ends[np.isnan(grids[:, 0])]
    for t in missing:
        i = ends.get_loc(t)
        nb = [grids[j] for j in (i - 1, i + 1) if 0 <= j < ends.size and not np.isnan(grids[j, 0])]
        grids[i] = np.mean(nb, axis=0)
    return grids, ends, missing


def read_qobs(wheel: Wheel, code: str, ends):
    """Observed discharge [m3/s] of one gauge at the step END times ``ends`` (NaN where missing).

    smash's file: header = time of the first row, one row per hour; negative = missing (``_read_qobs``
    pairs row t with the model step ending at t).
    """
    import pandas as pd

    tab = pd.read_csv(io.BytesIO(wheel.read(f"{CANCE}qobs/{code}.csv")))
    t0 = pd.Timestamp(tab.columns[0])
    q = pd.Series(tab.iloc[:, 0].to_numpy(float), index=t0 + pd.to_timedelta(np.arange(len(tab)) * DT_S, "s"))
    q[q < 0] = np.nan
    return q.reindex(ends).to_numpy()


def basin_cells(wheel: Wheel, name: str, net, transform_fd) -> np.ndarray:
    """Values of a GeoTIFF member on the basin cells [n_cells] (float64; no-data -> NaN); its grid must share
    the flow directions' 1 km lattice (any origin)."""
    arr, tr, crs, nodata = wheel.raster(name)
    orow = (transform_fd.f - tr.f) / transform_fd.a
    ocol = (tr.c - transform_fd.c) / transform_fd.a
    if tr.a != transform_fd.a or orow != round(orow) or ocol != round(ocol) or crs.to_epsg() != 2154:
        sys.exit(f"{name}: grid not aligned with France_flwdir.tif ({tr})")
    pr, pc = net["rows"] - int(round(orow)), net["cols"] - int(round(ocol))
    if pr.min() < 0 or pc.min() < 0 or pr.max() >= arr.shape[0] or pc.max() >= arr.shape[1]:
        sys.exit(f"{name}: the basin is not inside the grid")
    v = arr[pr, pc].astype(np.float64)
    if nodata is not None:
        v[v == nodata] = np.nan
    return v


def make_forcings(wheel: Wheel, net, tr, prcp_mm: np.ndarray, ends):
    """Step 5: per-catchment forcings and descriptors, catchment means of the 1 km cells (all cells 1 km2).

    precipitation [reaches, T] mm per hourly step (the grids read for the runoff); PET [reaches, T] mm per hourly
    step = the daily interannual PET of the step's calendar day (``MMDD_ETPJIA.tif``, mm per day) / 24;
    descriptors ``slope`` and ``dd`` (drainage density) from ``descriptor/*.tif`` [reaches].
    """
    import pandas as pd

    mean = np.zeros((net["n"], net["heads"].size))
    mean[np.arange(net["n"]), net["catchment"]] = 1.0
    mean /= mean.sum(axis=0, keepdims=True)                                           # cell -> catchment mean
    starts = ends - pd.Timedelta(seconds=DT_S)
    days = sorted({f"{t:%m%d}" for t in starts})
    pet_day = {}
    for d in days:
        v = basin_cells(wheel, f"{CANCE}pet/{d}_ETPJIA.tif", net, tr)
        if np.isnan(v).any() or (v < 0).any():
            sys.exit(f"{CANCE}pet/{d}_ETPJIA.tif: no-data or negative PET on basin cells")
        pet_day[d] = v @ mean
    pet = np.stack([pet_day[f"{t:%m%d}"] for t in starts], axis=1) / 24.0
    desc = {}
    for key, name in (("slope", "slope"), ("drainage_density", "dd")):
        v = basin_cells(wheel, f"{CANCE}descriptor/{name}.tif", net, tr)
        if np.isnan(v).any():
            sys.exit(f"{CANCE}descriptor/{name}.tif: no-data on {int(np.isnan(v).sum())} basin cells")
        desc[key] = v @ mean
    return {"precipitation": (prcp_mm @ mean).T, "pet": pet, **desc, "pet_days": len(days)}


# ---------------------------------------------------------------------------------------------- steps
def make_network(wheel: Wheel, threshold_km2: float):
    """Steps 1-2: reaches, their layers, the gauge table and a validated thalweg network (for the summary)."""
    import geopandas as gpd
    import h5py
    import pandas as pd

    from thalweg.network import from_arrays

    gauges = pd.read_csv(io.BytesIO(wheel.read(CANCE + "gauge_attributes.csv")), dtype={"code": str})
    fd_full, tr, crs, _ = wheel.raster(DATASET + "France_flwdir.tif")
    if crs.to_epsg() != 2154 or tr.a != -tr.e:
        sys.exit(f"France_flwdir.tif: expected square cells in EPSG:2154, got {crs} {tr}")
    net = build_reaches(clip_basin(fd_full, tr, gauges), threshold_km2)
    smash = check_against_smash_mesh(wheel, net, tr, h5py)

    nr = net["heads"].size
    linkno = np.arange(1, nr + 1, dtype=np.int64)
    dslinkno = np.where(net["ds_reach"] >= 0, linkno[np.maximum(net["ds_reach"], 0)], -1)
    ds_area = net["acc_km2"][net["last"]] * 1e6
    order = strahler(net["ds_reach"], ds_area)
    lines, length, polys = reach_geometry(net)
    catch_area = np.array([p.area for p in polys])
    network = from_arrays(linkno, dslinkno, length, ds_area, catchment_area=catch_area)  # validates the tree

    rows = []
    for g in gauges.itertuples():
        k = net["gauge_cell"][g.code]
        ri = net["reach"][k]
        if net["last"][ri] != k:
            sys.exit(f"gauge {g.code}: its cell does not end reach LINKNO {linkno[ri]} (reaches must be cut there)")
        rows.append({"gauge_id": g.code, "name": GAUGE_NAMES.get(g.code, ""), "LINKNO": int(linkno[ri]),
                     "area_km2": float(g.area), "area_km2_reach": float(ds_area[ri] / 1e6),
                     "area_km2_smash_mesh": smash[g.code][0], "smash_cell": smash[g.code][1],
                     "x": float(g.x), "y": float(g.y), "x_snap": float(net["xc"][k]), "y_snap": float(net["yc"][k]),
                     "snap_distance_m": float(np.hypot(net["xc"][k] - g.x, net["yc"][k] - g.y))})
    gtab = pd.DataFrame(rows)
    gtab["area_error_pct"] = 100 * (gtab.area_km2_reach / gtab.area_km2 - 1)
    bad = gtab[gtab.area_error_pct.abs() > 100 * AREA_TOLERANCE]
    if len(bad):
        sys.exit(f"snapped areas off by more than {AREA_TOLERANCE:.0%}: {bad.to_dict('records')}")

    layers = {
        "rivers": gpd.GeoDataFrame({"LINKNO": linkno, "DSLINKNO": dslinkno, "strmOrder": order.astype(np.int32),
                                    "LengthGeodesicMeters": length, "DSContArea": ds_area},
                                   geometry=lines, crs="EPSG:2154"),
        "catchments": gpd.GeoDataFrame({"LINKNO": linkno, "Shape_Area": catch_area}, geometry=polys,
                                       crs="EPSG:2154"),
        "gauges": gpd.GeoDataFrame(gtab[["gauge_id", "name", "LINKNO", "area_km2", "area_km2_reach"]],
                                   geometry=gpd.points_from_xy(gtab.x, gtab.y), crs="EPSG:2154"),
    }
    facts = {"summary": network.summary(), "threshold_km2": threshold_km2, "n_cells": net["n"],
             "n_channel": int(net["channel"].sum()), "basin_km2": float(ds_area.max() / 1e6),
             "orders": np.bincount(order)[1:].tolist(), "length_km": float(length.sum() / 1e3),
             "reach_len_m": (float(length.min()), float(np.median(length)), float(length.max()))}
    return net, tr, layers, gtab, facts


def make_runoff(wheel: Wheel, net, tr, gauge_ids):
    """Step 3: runoff volumes [reaches, T] = c x precipitation volume on each catchment; observations."""
    prcp_mm, ends, missing = read_precipitation(wheel, net, tr)
    cells_to_reach = np.zeros((net["n"], net["heads"].size))
    cells_to_reach[np.arange(net["n"]), net["catchment"]] = net["res"] ** 2 * 1e-3   # mm on a cell -> m3
    vol_p = prcp_mm @ cells_to_reach                                                  # [T, reaches] m3
    qobs = {g: read_qobs(wheel, g, ends) for g in gauge_ids}
    q_out = qobs[OUTLET_GAUGE]
    if np.isnan(q_out).any():
        sys.exit(f"{OUTLET_GAUGE}: {np.isnan(q_out).sum()} missing hours in the period; the volume is undefined")
    v_obs = float(q_out.sum() * DT_S)
    coef = v_obs / float(vol_p.sum())
    runoff = (coef * vol_p).T.astype(np.float32)
    facts = {"coef": coef, "v_obs": v_obs, "v_prcp": float(vol_p.sum()), "ends": ends, "missing": missing,
             "runoff_sum": float(runoff.astype(np.float64).sum()), "prcp_mm": prcp_mm}
    return runoff, qobs, facts


def write_files(out: Path, layers, gtab, runoff, qobs, f) -> None:
    """Step 4: the GeoPackage, the runoff NetCDF and the two CSV files, each written atomically."""
    import pandas as pd
    import xarray as xr

    from thalweg._files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    os.environ["OGR_CURRENT_DATE"] = FIXED_GPKG_DATE
    with atomic_path(out / "cance_rivers.gpkg") as tmp:
        for name, layer in layers.items():
            layer.to_file(tmp, layer=name, engine="pyogrio")

    ends = f["ends"]
    starts = ends - pd.Timedelta(seconds=DT_S)
    units = f"hours since {starts[0]:%Y-%m-%d %H:%M:%S}"
    ds = xr.Dataset(
        {"catchment_runoff": (("riverId", "time"), runoff, {
            "units": "m3", "long_name": "lateral runoff volume entering each reach during the step",
            "cell_methods": "time: sum"}),
         "time_bnds": (("time", "nv"), np.stack([starts.values, ends.values], axis=1))},
        coords={"riverId": ("riverId", layers["rivers"].LINKNO.to_numpy(),
                            {"long_name": "reach id (LINKNO in cance_rivers.gpkg)"}),
                "time": ("time", starts.values, {"long_name": "start of the hourly step", "bounds": "time_bnds",
                                                 "comment": "time marks the START of each hourly step; the "
                                                            "value is the volume from time to time + 1 h"})},
        attrs={"title": "Cance sample basin: lateral runoff volumes per reach (water-balance scaling)",
               "source": f"{WHEEL_SPEC} wheel, smash/factory/dataset/Cance (precipitation, qobs)",
               "method": f"runoff = c * precipitation volume on each reach catchment, c = {f['coef']:.6f} "
                         f"(observed {OUTLET_GAUGE} volume / basin precipitation volume); not a "
                         "rainfall-runoff model",
               "runoff_coefficient": f["coef"], "time_step_s": DT_S,
               "filled_hours": ", ".join(t.strftime("%Y-%m-%dT%H:%M") for t in f["missing"]) or "none",
               "Conventions": "CF-1.8"})
    enc = {"catchment_runoff": {"zlib": True, "complevel": 9, "shuffle": True, "dtype": "float32"},
           "time": {"units": units, "calendar": "standard", "dtype": "int32"},
           "time_bnds": {"units": units, "dtype": "int32"}, "riverId": {"dtype": "int64"}}
    with atomic_path(out / "cance_runoff.nc") as tmp:
        ds.to_netcdf(tmp, encoding=enc, engine="netcdf4")

    fc = f["forcings"]
    rid = ("riverId", layers["rivers"].LINKNO.to_numpy(), {"long_name": "reach id (LINKNO in cance_rivers.gpkg)"})
    fds = xr.Dataset(
        {"precipitation": (("riverId", "time"), fc["precipitation"].astype(np.float32), {
            "units": "mm", "long_name": "precipitation during the step, mean over the reach's catchment",
            "cell_methods": "time: sum area: mean"}),
         "pet": (("riverId", "time"), fc["pet"].astype(np.float32), {
             "units": "mm", "long_name": "potential evapotranspiration during the step, mean over the catchment",
             "comment": "daily interannual PET of the step's calendar day (smash ETPJIA grids, mm per day) / 24",
             "cell_methods": "time: sum area: mean"}),
         "slope": (("riverId",), fc["slope"].astype(np.float32), {
             "units": "unknown", "long_name": "smash descriptor 'slope', mean over the catchment (unit not "
                                              "stated in the wheel)"}),
         "drainage_density": (("riverId",), fc["drainage_density"].astype(np.float32), {
             "units": "unknown", "long_name": "smash descriptor 'dd' (drainage density), mean over the "
                                              "catchment (unit not stated in the wheel)"}),
         "time_bnds": (("time", "nv"), np.stack([starts.values, ends.values], axis=1))},
        coords={"riverId": rid, "time": ("time", starts.values, {
            "long_name": "start of the hourly step", "bounds": "time_bnds",
            "comment": "time marks the START of each hourly step; depths fall from time to time + 1 h"})},
        attrs={"title": "Cance sample basin: forcings and descriptors per reach catchment",
               "source": f"{WHEEL_SPEC} wheel, smash/factory/dataset/Cance (prcp, pet, descriptor)",
               "filled_hours": ", ".join(t.strftime("%Y-%m-%dT%H:%M") for t in f["missing"]) or "none",
               "time_step_s": DT_S, "Conventions": "CF-1.8"})
    fenc = {v: {"zlib": True, "complevel": 9, "shuffle": True, "dtype": "float32", "least_significant_digit": 3}
            for v in ("precipitation", "pet")}
    fenc.update({"time": {"units": units, "calendar": "standard", "dtype": "int32"},
                 "time_bnds": {"units": units, "dtype": "int32"}, "riverId": {"dtype": "int64"}})
    with atomic_path(out / "cance_forcings.nc") as tmp:
        fds.to_netcdf(tmp, encoding=fenc, engine="netcdf4")

    with atomic_path(out / "cance_gauges.csv") as tmp:
        gtab.drop(columns="smash_cell").round({"area_km2_reach": 3, "snap_distance_m": 1, "area_error_pct": 2}) \
            .to_csv(tmp, index=False)
    qtab = pd.DataFrame({"time_end": ends.strftime("%Y-%m-%dT%H:%M:%S"), **qobs})
    with atomic_path(out / "cance_qobs.csv") as tmp:
        qtab.to_csv(tmp, index=False, na_rep="", float_format="%.3f")


def check_against_smash_mesh(wheel: Wheel, net, tr, h5py) -> dict[str, tuple[float, str]]:
    """Check the D8 decoding: our accumulation must equal smash's own ``flwacc`` on the mesh's active cells.

    Returns, per gauge, smash's delineated area (``area_dln``, km2) and where smash's gauge cell lies
    relative to ours along the flow (for the README).
    """
    with h5py.File(io.BytesIO(wheel.read(CANCE + "mesh_Cance.hdf5")), "r") as f:
        m = f["mesh"]
        r0 = int(round((tr.f - m.attrs["ymax"]) / tr.a))
        c0 = int(round((m.attrs["xmin"] - tr.c) / tr.a))
        ar, ac = np.nonzero(m["active_cell"][()] == 1)
        flwacc_km2 = m["flwacc"][()] / 1e6
        codes = [c.decode() for c in m["code"][()]]
        area_dln = dict(zip(codes, m["area_dln"][()] / 1e6))
        smash_cell = {c: (int(r) + r0, int(k) + c0) for c, (r, k) in zip(codes, m["gauge_pos"][()])}
    ours = dict(zip(zip(net["rows"], net["cols"]), net["acc_km2"]))
    theirs = {(r + r0, c + c0): flwacc_km2[r, c] for r, c in zip(ar, ac)}
    if set(ours) != set(theirs) or any(abs(ours[k] - theirs[k]) > 1e-6 for k in ours):
        sys.exit("basin cells or accumulation differ from smash's mesh_Cance.hdf5: the D8 decoding is wrong")
    pos = {rc: i for i, rc in enumerate(zip(net["rows"], net["cols"]))}
    out = {}
    for code in codes:
        mine, smash = net["gauge_cell"][code], pos.get(smash_cell[code], -1)
        where = "elsewhere"
        for a, b, word in ((mine, smash, "downstream"), (smash, mine, "upstream")):
            k, steps = a, 0
            while k >= 0 and k != b and steps < 20:
                k, steps = net["down"][k], steps + 1
            if b >= 0 and k == b:
                where = "same cell" if steps == 0 else f"{steps} cell{'s' * (steps > 1)} {word}"
                break
        out[code] = (float(area_dln[code]), where)
    return out


def write_readme(out: Path, f: dict) -> None:
    from thalweg._files import atomic_write_text

    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.suffix in (".gpkg", ".nc", ".csv")}
    rows = "\n".join(f"   | {x.gauge_id} | {x.name or 'unknown'} | {x.LINKNO} | {x.area_km2:g} | "
                     f"{x.area_km2_reach:g} | {x.area_error_pct:+.1f} % | {x.snap_distance_m:.0f} | "
                     f"{x.area_km2_smash_mesh:g} ({x.smash_cell}) |" for x in f["gauges"].itertuples())
    s, ends, step = f["summary"], f["ends"], np.timedelta64(DT_S, "s")
    text = README.format(
        wheel=f["wheel"], wheel_sha=f["wheel_sha256"], data_sha=f["data_sha256"], thr=f["threshold_km2"],
        reaches=s["reaches"], headwaters=s["headwaters"], depth=s["max_depth"], levels=s["levels"],
        orders=", ".join(f"{i + 1}: {n}" for i, n in enumerate(f["orders"])), length_km=f["length_km"],
        lmin=f["reach_len_m"][0], lmed=f["reach_len_m"][1], lmax=f["reach_len_m"][2], ncells=f["n_cells"],
        nchannel=f["n_channel"], basin=f["basin_km2"], coef=f["coef"], vobs=f["v_obs"] / 1e6,
        vp=f["v_prcp"] / 1e6, pmm=f["v_prcp"] / (f["basin_km2"] * 1e3), qmm=f["v_obs"] / (f["basin_km2"] * 1e3),
        t0=ends[0] - step, t1=ends[-1] - step, e0=ends[0], e1=ends[-1], nt=ends.size, outlet=OUTLET_GAUGE,
        missing=", ".join(f"{t:%Y-%m-%d %H:%M}" for t in f["missing"]) or "none", gauges=rows,
        petdays=f["forcings"]["pet_days"],
        sizes="\n".join(f"| `{k}` | {v:,} bytes |" for k, v in sizes.items()),
        total=sum(sizes.values()) / 1024 ** 2)
    atomic_write_text(out / "README.md", text)


README = """\
# Sample basin: the Cance at Sarras (France), 3 nested gauges

Generated by `scripts/make_sample_basin.py`; do not edit by hand. Regenerate with

    .venv/bin/python scripts/make_sample_basin.py            # downloads the wheel with pip
    .venv/bin/python scripts/make_sample_basin.py --wheel /path/to/{wheel}

## Origin and licence

- Source: the `hydro-smash` 1.3.0 wheel on PyPI (`{wheel}`, sha256 `{wheel_sha}`), files under
  `smash/factory/dataset/`: `France_flwdir.tif`, `Cance/gauge_attributes.csv`, `Cance/mesh_Cance.hdf5`,
  `Cance/qobs/*.csv`, `Cance/prcp/**/*.tif`, `Cance/pet/*.tif`, `Cance/descriptor/*.tif` (sha256 over the names and bytes of the Cance files and the
  flow directions: `{data_sha}`). smash is developed by INRAE (RECOVER) and HYDRIS Hydrologie.
- Licence: `hydro-smash` is distributed under GPL-3.0 (wheel metadata `License: GPL-3.0`). The wheel gives
  no separate licence for its sample data, so these derived files are treated as part of a GPL-3.0
  distribution: keep this note and the attribution with them, and cite smash (Colleoni et al., 2025,
  Geosci. Model Dev. 18, 7003-7034, doi:10.5194/gmd-18-7003-2025).
- Producers: the wheel's files name no agency. The gauge codes are French national hydrometric station
  codes (HYDRO / HydroPortail network, public data); smash's documentation calls the outlet "the Cance at
  Sarras". The hourly 1 km precipitation grids (tenths of mm) and the flow directions are not attributed in
  the wheel; French rainfall grids of this kind are Meteo-France products, but which one is not stated.

## Files

| file | content |
|---|---|
| `cance_rivers.gpkg` | layer `rivers` (LineString, EPSG:2154): `LINKNO`, `DSLINKNO` (-1 at the outlet), `strmOrder` (Strahler), `LengthGeodesicMeters` [m, GRS80 ellipsoid], `DSContArea` [m2, drainage area at the reach's downstream end]; layer `catchments` (MultiPolygon): `LINKNO`, `Shape_Area` [m2]; layer `gauges` (Point, official coordinates) |
| `cance_runoff.nc` | `catchment_runoff(riverId, time)` float32, units `m3` (volume per hourly step), zlib; `riverId` = `LINKNO`; `time` = START of each step (CF; `time_bnds` = [start, end]) |
| `cance_gauges.csv` | `gauge_id`, `name`, `LINKNO` (reach ending at the gauge), `area_km2` (official), `area_km2_reach` (its `DSContArea`), `area_km2_smash_mesh` (smash's own delineation), `x`, `y` (official, EPSG:2154), `x_snap`, `y_snap` (cell centre used), `snap_distance_m`, `area_error_pct` |
| `cance_qobs.csv` | `time_end` (ISO 8601, END of each hourly step), one column per gauge, m3/s, missing = empty |
| `cance_forcings.nc` | `precipitation(riverId, time)`, `pet(riverId, time)` float32, units `mm` per hourly step (catchment means, same time axis as `cance_runoff.nc`); descriptors `slope(riverId)`, `drainage_density(riverId)` (catchment means of smash's `slope.tif` and `dd.tif`, units not stated in the wheel) |

| file | size |
|---|---|
{sizes}

Total {total:.2f} MiB.

## Processing

1. **Flow directions.** `France_flwdir.tif`: 1 km D8, EPSG:2154, smash codes 1 = N, clockwise to 8 = NW.
   Checked: the accumulation computed here equals smash's own `flwacc` in `mesh_Cance.hdf5` on all
   {ncells} basin cells (read as 1 = N counter-clockwise, or 1 = E clockwise, the grid has cycles). The
   basin is every cell upstream of the outlet gauge's cell: {ncells} cells of 1 km2 = {basin:.0f} km2
   (planar Lambert-93 areas; the scale error there is below 0.1 %).
2. **Gauges.** Each gauge is snapped to the cell, within 2 cells of its official coordinates, whose
   accumulated area is closest to the official area (smash searches 1 cell). Reaches are cut below every
   gauge, so a gauge's reach ends at the gauge cell and its `DSContArea` is the gauge's area.

   | gauge | name | LINKNO | official km2 | snapped km2 | error | moved [m] | smash mesh km2 (its cell) |
   |---|---|---|---|---|---|---|---|
{gauges}

   At 1 km resolution a 25 km2 gauge can only be matched to within a few km2: successive cells along its
   stream jump by several km2.
3. **Reaches.** Channel cells: accumulation >= {thr:g} km2 ({nchannel} of {ncells} cells). A reach is a
   chain of channel cells from a head (a source, a confluence cell, or the cell below a gauge) to the cell
   before the next head. Its line runs through the cell centres to the centre of the first cell of the
   downstream reach (lines meet end to start); the outlet reach ends at the outlet cell's edge in its flow
   direction. A reach's catchment is every cell whose flow first meets the channel in that reach (its own
   channel cells included), dissolved from 1 km squares. Result: {reaches} reaches, {headwaters} headwater
   reaches, one outlet, maximum depth {depth} reaches ({levels} levels), reaches per Strahler order
   ({orders}), total length {length_km:.0f} km, reach length min / median / max {lmin:.0f} / {lmed:.0f} /
   {lmax:.0f} m. LINKNO = 1..{reaches}, numbered by head cell, north-west first.
4. **Runoff: a water-balance scaling to feed routing, NOT a rainfall-runoff model.** Hourly precipitation
   (0.1 mm; the grid is aligned with the flow directions, so each basin cell takes its own grid value) is
   summed over each reach's catchment as a volume (mm x 1e-3 x 1e6 m2) and multiplied by one runoff
   coefficient for the whole basin and period,
   c = observed volume at {outlet} / basin precipitation volume = {vobs:.2f} hm3 / {vp:.2f} hm3 = **{coef:.4f}**
   (precipitation {pmm:.0f} mm, observed runoff {qmm:.0f} mm over the basin). The runoff volume over all
   reaches thus equals the observed outlet volume over the same steps. There is no soil store, no
   evapotranspiration (the wheel's PET is not used), no baseflow and no hillslope delay: the runoff keeps
   the timing of the rain, so routed discharge is flashier than observed, and early-autumn storms on dry
   soils give too much runoff. Use it to exercise routing, not to judge a model. Missing precipitation
   hours, filled with the mean of the hours before and after: {missing}.
5. **Time conventions** (ROUTING.md section 1). smash pairs the precipitation file stamped t and the
   discharge row t with the step ENDING at t. `cance_runoff.nc` labels each step by its START: {nt} hourly
   steps starting {t0:%Y-%m-%d %H:%M} .. {t1:%Y-%m-%d %H:%M}. `cance_qobs.csv` labels the same steps by
   their END: {e0:%Y-%m-%d %H:%M} .. {e1:%Y-%m-%d %H:%M}; row k is the discharge at the end of runoff
   step k. The source files state no time zone (French hydrometric and Meteo-France data are normally UTC).
6. **Forcings for runoff models** (`cance_forcings.nc`, for `thalweg train`). Every value is a mean over the
   1 km cells of a reach's catchment (each cell weighs the same). Precipitation: the hourly grids of step 4
   (mm per hour, the same filled hours). PET: `Cance/pet/MMDD_ETPJIA.tif`, smash's daily interannual PET
   (mm per day, {petdays} calendar days used; smash's setup reads it with `daily_interannual_pet: True`), taken
   for the calendar day of each step's start and spread evenly over its 24 hours (smash itself spreads it with a
   diurnal curve; this file does not). Descriptors: `Cance/descriptor/slope.tif` and `dd.tif` (drainage
   density), the two descriptors of smash's Cance setup (`descriptor_name: ["slope", "dd"]`), units not stated.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL_SPEC} wheel (default: pip download)")
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "sample")
    parser.add_argument("--threshold-km2", type=float, default=DEFAULT_THRESHOLD_KM2,
                        help="channel initiation: accumulated area in km2 (default %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Wheel(args.wheel if args.wheel else fetch_wheel(Path(tmp)))
        net, tr, layers, gtab, facts = make_network(wheel, args.threshold_km2)
        runoff, qobs, rfacts = make_runoff(wheel, net, tr, list(gtab.gauge_id))
        rfacts["forcings"] = make_forcings(wheel, net, tr, rfacts.pop("prcp_mm"), rfacts["ends"])
        facts.update(rfacts, gauges=gtab, wheel=wheel.path.name, data_sha256=wheel.data_digest(),
                     wheel_sha256=hashlib.sha256(wheel.path.read_bytes()).hexdigest())
    write_files(args.out, layers, gtab, runoff, qobs, facts)
    write_readme(args.out, facts)

    s = facts["summary"]
    print(f"Cance sample basin -> {args.out}")
    print(f"  wheel {facts['wheel']} (sha256 {facts['wheel_sha256'][:12]}..., data {facts['data_sha256'][:12]}...)")
    print(f"  basin {facts['basin_km2']:.0f} km2 ({facts['n_cells']} cells); threshold {args.threshold_km2:g} km2")
    print(f"  reaches {s['reaches']}, outlets {s['outlets']}, headwaters {s['headwaters']}, max depth "
          f"{s['max_depth']}, levels {s['levels']}, reaches per Strahler order {facts['orders']}")
    for x in gtab.itertuples():
        print(f"  gauge {x.gauge_id}: LINKNO {x.LINKNO}, {x.area_km2_reach:g} km2 vs official {x.area_km2:g} "
              f"({x.area_error_pct:+.1f} %), moved {x.snap_distance_m:.0f} m; smash mesh {x.area_km2_smash_mesh:g} "
              f"km2 ({x.smash_cell})")
    print(f"  runoff coefficient c = {facts['coef']:.4f} (observed {facts['v_obs'] / 1e6:.2f} hm3 / precipitation "
          f"{facts['v_prcp'] / 1e6:.2f} hm3); runoff total {facts['runoff_sum'] / 1e6:.3f} hm3")
    ends = facts["ends"]
    print(f"  {ends.size} hourly steps ending {ends[0]} .. {ends[-1]}; filled precipitation hours: "
          f"{', '.join(str(t) for t in facts['missing']) or 'none'}")
    total = 0
    for p in sorted(args.out.iterdir()):
        total += p.stat().st_size
        print(f"  {p.name:<20} {p.stat().st_size:>10,} bytes")
    print(f"  total {total / 1024 ** 2:.2f} MiB")


if __name__ == "__main__":
    main()
