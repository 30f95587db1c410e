"""Thalweg's QGIS plugin: QGIS calls :func:`classFactory`; nothing else happens at import."""


def classFactory(iface):  # noqa: N802  (the name QGIS looks for)
    """The plugin instance for QGIS (``iface`` is None under qgis_process)."""
    from .main import ThalwegPlugin

    return ThalwegPlugin(iface)
