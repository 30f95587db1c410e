"""A QGIS line layer -> the network part of a backend job body.

A file-backed layer read whole is sent by path and layer name: the backend reads it itself (its one vector
reader, its schema rules, its units). A memory layer, a selection, a filtered layer (subset string) or
"everything upstream of this reach" is read here with PyQGIS into arrays (ids, downstream ids, length, area,
lines as WKB) and sent inline; the field mapping and units still come from the backend (``POST /detect``),
never from rules of the plugin's own. Lengths missing from the layer are measured: geodesic
(QgsDistanceArea on the CRS's ellipsoid) for geographic layers, planar in metres otherwise.

Thread safety: :func:`network_source` runs on the main thread (it touches the layer); the returned
:class:`NetworkSource` reads features through a ``QgsVectorLayerFeatureSource``, so :meth:`NetworkSource.job_fields`
may run in a QgsTask or a Processing algorithm's thread.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

from qgis.core import (QgsCoordinateTransformContext, QgsDistanceArea, QgsFeatureRequest, QgsProviderRegistry,
                       QgsUnitTypes, QgsVectorLayer, QgsVectorLayerFeatureSource, QgsWkbTypes)

from ..errors import LEVEL_WARNING, PluginError

__all__ = ["NetworkSource", "network_source", "detect_fields", "select_reaches", "upstream_ids", "file_reference",
           "SAMPLE_ROWS"]

SAMPLE_ROWS = 500  # rows of sample values sent to the backend's unit guesses
INLINE_UNITS = {"length": ("m", "km"), "area": ("m2", "km2")}


def file_reference(layer: QgsVectorLayer) -> tuple[str, str | None, str] | None:
    """(path, layer name, subset string) of an OGR file layer, None for any other provider (memory, WFS, ...)."""
    if layer.providerType() != "ogr":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    path = parts.get("path")
    if not path:
        return None
    return path, parts.get("layerName") or None, layer.subsetString() or ""


def _columns(layer) -> list[str]:
    return [f.name() for f in layer.fields()]


def detect_fields(client, layer: QgsVectorLayer, fields: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The backend's schema detection for ``layer`` (main thread: it reads a few rows for the unit guesses):
    ``schema``, ``fields`` (role -> field), ``units``, ``candidates``, ``roles``, ``problems``; see POST /detect.
    ``fields`` are the user's overrides (role -> field, None drops a role)."""
    ref = file_reference(layer)
    if ref is not None:
        return client.detect(ref[0], layer=ref[1], fields=fields)
    return client.detect(columns=_columns(layer), values=_samples(QgsVectorLayerFeatureSource(layer), layer.fields()),
                         fields=fields)


def _samples(source, qfields) -> dict[str, list[float | None]]:
    """The first SAMPLE_ROWS values of every numeric field (for the backend's unit guesses)."""
    numeric = [i for i, f in enumerate(qfields) if f.isNumeric()]
    values: dict[str, list[float | None]] = {qfields[i].name(): [] for i in numeric}
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setLimit(SAMPLE_ROWS)
    request.setSubsetOfAttributes(numeric)
    for feature in source.getFeatures(request):
        attrs = feature.attributes()
        for i in numeric:
            v = _value(attrs[i])
            values[qfields[i].name()].append(None if v is None or v != v else float(v))
    return values


def _value(value):
    """An attribute value, None for NULL (a QVariant object in PyQGIS 3.22, not None)."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return None
    return value


def upstream_ids(ids: list[int], downstream: list[int], reach_id: int) -> set[int]:
    """The ids of ``reach_id`` and every reach that drains into it (a walk up the reversed tree)."""
    upstream: dict[int, list[int]] = {}
    for i, d in zip(ids, downstream):
        upstream.setdefault(d, []).append(i)
    out, stack = {reach_id}, [reach_id]
    while stack:
        for u in upstream.get(stack.pop(), ()):
            if u not in out:  # a cycle must not loop here: the backend reports it
                out.add(u)
                stack.append(u)
    return out


@dataclasses.dataclass
class NetworkSource:
    """What a job needs to read a layer's network; build it with :func:`network_source`.

    ``kind`` is 'file' (sent by path) or 'inline' (arrays read here). After :meth:`job_fields` has run,
    ``detection`` holds the backend's answer and ``id_field`` the field of reach ids (to select reaches named by
    an error, see :func:`select_reaches`); ``n_reaches`` the number sent inline.
    """

    kind: str
    layer_id: str
    layer_name: str
    path: str | None = None
    file_layer: str | None = None
    fields: dict[str, str | None] = dataclasses.field(default_factory=dict)
    feature_ids: list[int] | None = None
    upstream_of: int | None = None
    with_geometry: bool = True
    crs_wkt: str = ""
    crs_geographic: bool = False
    map_units: Any = None
    ellipsoid: str = ""
    transform_context: Any = None
    detection: dict[str, Any] | None = None
    id_field: str | None = None
    n_reaches: int | None = None
    _source: Any = None
    _qfields: Any = None
    _columns: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        """One line for the panel and the log."""
        if self.kind == "file":
            layer = f", layer '{self.file_layer}'" if self.file_layer else ""
            return f"{self.path}{layer} (read by the backend)"
        what = ("selected features" if self.feature_ids is not None else "features") + \
            (f" upstream of reach {self.upstream_of}" if self.upstream_of is not None else "")
        return f"layer '{self.layer_name}': {what}, sent inline"

    def job_fields(self, client) -> dict[str, Any]:
        """The network keys of a job body (``network`` and, for files, ``layer``/``fields``). Thread-safe."""
        if self.kind == "file":
            out: dict[str, Any] = {"network": self.path}
            if self.file_layer:
                out["layer"] = self.file_layer
            if self.fields:
                out["fields"] = dict(self.fields)
            return out
        return {"network": self.inline(client)}

    def inline(self, client) -> dict[str, Any]:
        """The layer's features as an inline network (see the service's InlineNetwork). Thread-safe."""
        det = client.detect(columns=self._columns, values=_samples(self._source, self._qfields), fields=self.fields)
        self.detection = det
        fields, units = det["fields"], det["units"]
        missing = [r for r in ("id", "downstream") if r not in fields]
        if missing or det.get("topology_from_geometry"):
            why = det["problems"][0] if det.get("problems") else f"the backend found no {' or '.join(missing)} field"
            raise PluginError(f"layer '{self.layer_name}': {why} Choose the reach id and downstream id fields in "
                              f"the Thalweg panel's field mapping, or save the layer to a GeoPackage and use it "
                              f"whole (the backend then reads it, lines and all).", "\n".join(det.get("problems", [])),
                              layer=self.layer_id)
        self.id_field = fields["id"]
        for role in ("length", "area"):
            if role in fields and units.get(role) not in INLINE_UNITS[role]:
                raise PluginError(f"layer '{self.layer_name}', field {fields[role]}: its unit "
                                  f"({units.get(role) or 'unknown'}) cannot be sent inline (only "
                                  f"{' or '.join(INLINE_UNITS[role])}). Choose another {role} field in the "
                                  f"Thalweg panel, or save the layer to a file and use it whole.",
                                  "\n".join(det.get("problems", [])), layer=self.layer_id, field=fields[role])
        return self._read(fields, units)

    def _index(self, name: str | None) -> int:
        return -1 if name is None else self._qfields.indexOf(name)

    def _read(self, fields: dict[str, str], units: dict[str, str | None]) -> dict[str, Any]:
        i_id, i_ds = self._index(fields["id"]), self._index(fields["downstream"])
        i_len, i_area = self._index(fields.get("length")), self._index(fields.get("area"))
        need_geometry = self.with_geometry or i_len < 0
        request = QgsFeatureRequest()
        if not need_geometry:
            request.setFlags(QgsFeatureRequest.NoGeometry)
        request.setSubsetOfAttributes([i for i in (i_id, i_ds, i_len, i_area) if i >= 0])
        if self.feature_ids is not None:
            request.setFilterFids(self.feature_ids)
        measure = None
        if i_len < 0:
            measure = _length_meter(self)
        ids, ds, length, area, blobs, bad = [], [], [], [], [], []
        for feature in self._source.getFeatures(request):
            attrs = feature.attributes()
            reach, down = _value(attrs[i_id]), _value(attrs[i_ds])
            if reach is None:
                bad.append(feature.id())
                continue
            ids.append(int(reach))
            ds.append(-1 if down is None else int(down))
            geom = feature.geometry() if need_geometry else None
            if i_len >= 0:
                v = _value(attrs[i_len])
                length.append(float("nan") if v is None else float(v))
            else:
                length.append(measure(geom) if geom is not None and not geom.isEmpty() else float("nan"))
            if i_area >= 0:
                v = _value(attrs[i_area])
                area.append(None if v is None or v != v else float(v))
            if self.with_geometry:
                blobs.append(bytes(geom.asWkb()) if geom is not None and not geom.isEmpty() else b"")
        if bad:
            raise PluginError(f"layer '{self.layer_name}', field {fields['id']}: {len(bad):,} features have no reach "
                              f"id (feature ids {', '.join(map(str, bad[:5]))}{' and more' if len(bad) > 5 else ''}). "
                              f"Fill the field or leave those features out of the selection.", layer=self.layer_id,
                              field=fields["id"])
        keep = None
        if self.upstream_of is not None:
            if self.upstream_of not in set(ids):
                raise PluginError(f"layer '{self.layer_name}': reach {self.upstream_of} is not among its "
                                  f"{len(ids):,} reaches ({fields['id']}); pick a reach of this layer.",
                                  layer=self.layer_id, field=fields["id"])
            wanted = upstream_ids(ids, ds, self.upstream_of)
            keep = [k for k, i in enumerate(ids) if i in wanted]
            ids, length = [ids[k] for k in keep], [length[k] for k in keep]
            ds = [-1 if ids[j] == self.upstream_of else ds[k] for j, k in enumerate(keep)]
            area = [area[k] for k in keep] if area else area
            blobs = [blobs[k] for k in keep] if blobs else blobs
        no_length = [i for i, v in zip(ids, length) if not v == v]
        if no_length:
            where = f"field {fields['length']}" if i_len >= 0 else "geometry"
            raise PluginError(f"layer '{self.layer_name}', {where}: {len(no_length):,} reaches have no length "
                              f"({', '.join(map(str, no_length[:5]))}{' and more' if len(no_length) > 5 else ''}). "
                              f"Fill the length field, or fix their lines.", layer=self.layer_id,
                              ids=no_length, field=fields.get("length"))
        if not ids:
            raise PluginError(f"layer '{self.layer_name}' has no features to route (check the selection or the "
                              f"layer's filter).", level=LEVEL_WARNING, layer=self.layer_id)
        self.n_reaches = len(ids)
        net: dict[str, Any] = {"ids": ids, "downstream_ids": ds, "length": length,
                               "length_unit": units.get("length") or "m"}
        if i_len < 0:
            net["length_unit"] = "m"  # measured here, in metres
        if i_area >= 0:
            net["area"], net["area_unit"] = area, units["area"]
        if self.with_geometry:
            net["geometry"] = {"wkb": _base64(b"".join(blobs)),
                               "sizes": [len(b) for b in blobs], "crs": self.crs_wkt or None}
        return net


def _base64(data: bytes, piece: int = 3 << 18) -> str:
    """base64 of ``data`` in pieces (whole 3-byte groups, so the text is the same), the GIL released between them:
    one call on the WKB of 100,000 lines holds the GIL long enough to stall QGIS's main thread."""
    import time

    parts = []
    for start in range(0, len(data), piece):
        parts.append(base64.b64encode(data[start:start + piece]).decode("ascii"))
        time.sleep(0)
    return "".join(parts)


def _length_meter(src: NetworkSource):
    """geometry -> length in m: geodesic on the ellipsoid for geographic CRSs, planar (in metres) otherwise."""
    from qgis.core import QgsCoordinateReferenceSystem

    crs = QgsCoordinateReferenceSystem.fromWkt(src.crs_wkt)
    if src.crs_geographic:
        da = QgsDistanceArea()
        da.setSourceCrs(crs, src.transform_context or QgsCoordinateTransformContext())
        da.setEllipsoid(src.ellipsoid or "EPSG:7030")
        return lambda geom: float(da.measureLength(geom))
    factor = QgsUnitTypes.fromUnitToUnitFactor(src.map_units, QgsUnitTypes.DistanceMeters)
    return lambda geom: float(geom.length()) * factor


def network_source(layer: QgsVectorLayer, *, selected_only: bool = False, upstream_of: int | None = None,
                   fields: dict[str, str | None] | None = None, with_geometry: bool = True,
                   force_inline: bool = False) -> NetworkSource:
    """How to send ``layer``'s network to the backend (main thread).

    Parameters
    ----------
    layer : a line layer.
    selected_only : only the selected features.
    upstream_of : only this reach (a value of the id field) and everything upstream of it; it becomes the outlet.
    fields : the user's field mapping (role -> field), overriding the backend's detection.
    with_geometry : send the lines too (so the backend can write a mapped result layer).
    force_inline : read the features here even for a file layer read whole.

    Raises PluginError for layers that are not line layers or have nothing selected.
    """
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        raise PluginError("the hydrography layer is not a valid vector layer; pick a line layer in the Thalweg panel.")
    if layer.geometryType() != QgsWkbTypes.LineGeometry:
        raise PluginError(f"layer '{layer.name()}' holds {QgsWkbTypes.geometryDisplayString(layer.geometryType())} "
                          f"features, not lines; pick the river lines layer.", layer=layer.id())
    feature_ids = None
    if selected_only:
        feature_ids = list(layer.selectedFeatureIds())
        if not feature_ids:
            raise PluginError(f"layer '{layer.name()}' has no selected features; select reaches on the map or untick "
                              f"'selected features only'.", level=LEVEL_WARNING, layer=layer.id())
    ref = file_reference(layer)
    common = dict(layer_id=layer.id(), layer_name=layer.name(), fields=dict(fields or {}))
    if ref is not None and not ref[2] and feature_ids is None and upstream_of is None and not force_inline:
        # absolute: the backend does not share QGIS's working folder (qgis_process run with relative paths)
        return NetworkSource("file", path=os.path.abspath(ref[0]), file_layer=ref[1], **common)
    from qgis.core import QgsProject

    crs = layer.crs()
    return NetworkSource(
        "inline", feature_ids=feature_ids, upstream_of=upstream_of, with_geometry=with_geometry,
        crs_wkt=crs.toWkt() if crs.isValid() else "", crs_geographic=crs.isGeographic(), map_units=crs.mapUnits(),
        ellipsoid=crs.ellipsoidAcronym(), transform_context=QgsProject.instance().transformContext(),
        _source=QgsVectorLayerFeatureSource(layer), _qfields=layer.fields(), _columns=_columns(layer), **common)


def select_reaches(layer: QgsVectorLayer, ids: list[Any], id_field: str) -> int:
    """Select the features of ``layer`` whose ``id_field`` is one of ``ids`` (e.g. the reaches of a cycle named
    by a validation error); the number selected. Main thread."""
    from qgis.core import QgsExpression

    if layer.fields().indexOf(id_field) < 0:
        raise PluginError(f"layer '{layer.name()}' has no field {id_field} to find reaches "
                          f"{', '.join(map(str, ids[:5]))} by.", layer=layer.id(), field=id_field)
    values = ", ".join(QgsExpression.quotedValue(v) for v in ids)
    layer.selectByExpression(f"{QgsExpression.quotedColumnRef(id_field)} IN ({values})",
                             QgsVectorLayer.SetSelection)
    return layer.selectedFeatureCount()
