"""Build the QGIS plugin zip, or install the plugin into a QGIS profile for development.

    python3 scripts/build_plugin.py                       # dist/thalweg-<version>.zip
    python3 scripts/build_plugin.py --dev-install          # symlink <profile>/python/plugins/thalweg -> plugin/
    python3 scripts/build_plugin.py --install dist/thalweg-0.1.0.zip --profiles-path /tmp/qgis/profiles

The zip has one top folder, ``thalweg`` (the package name QGIS imports, so the plugin's imports stay relative):
metadata.txt, LICENSE, the plugin's code, the backend's standard-library job client (``service/client.py``, a
symlink to ``backend/thalweg/client.py`` in the checkout, written out as a file here: one implementation) and the
resources it needs at run time (``resources/styles``, ``resources/icons``, ``resources/models``). Nothing of
backend/, tests/, scripts/ or the sample data goes in. Standard library only: runs under any Python >= 3.9.
"""
from __future__ import annotations

import argparse
import configparser
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugin"
SLUG = "thalweg"
RUNTIME_RESOURCES = ("styles", "icons", "models")  # models: the planners' Processing model
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
REQUIRED_METADATA = ("name", "description", "about", "version", "qgisMinimumVersion", "author", "email",
                     "repository", "tracker", "homepage", "icon", "category", "hasProcessingProvider")


def metadata() -> configparser.SectionProxy:
    """metadata.txt's [general] section, checked for the keys the QGIS plugin repository requires."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    missing = [k for k in REQUIRED_METADATA if not general.get(k)]
    if missing:
        raise SystemExit(f"error: metadata.txt lacks {', '.join(missing)}; add them to its [general] section")
    return general


def project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit("error: no version in pyproject.toml")


def files() -> list[tuple[Path, str]]:
    """(source file, path inside the zip) of everything the installed plugin needs, symlinks followed."""
    out: list[tuple[Path, str]] = [(ROOT / "metadata.txt", f"{SLUG}/metadata.txt"),
                                   (ROOT / "LICENSE", f"{SLUG}/LICENSE")]
    for folder, dirs, names in os.walk(PLUGIN, followlinks=False):
        here = Path(folder)
        rel = here.relative_to(PLUGIN)
        keep = []
        for d in sorted(dirs):
            if d in SKIP_DIRS or (rel == Path(".") and d == "resources"):
                continue  # resources: only the run-time parts, below
            if (here / d).is_symlink():
                raise SystemExit(f"error: {here / d} is a symlinked folder; only plugin/resources may be one")
            keep.append(d)
        dirs[:] = keep
        for name in sorted(names):
            path = here / name
            if path.suffix in SKIP_SUFFIXES or (rel == Path(".") and name in ("metadata.txt",)):
                continue
            if not path.exists():
                raise SystemExit(f"error: {path} is a broken symlink")
            out.append((path.resolve(), f"{SLUG}/{(rel / name).as_posix()}"))
    for part in RUNTIME_RESOURCES:
        base = ROOT / "resources" / part
        if not base.is_dir():
            raise SystemExit(f"error: resources/{part} is missing (the plugin loads it at run time)")
        for path in sorted(base.rglob("*")):
            if path.is_file() and path.suffix not in SKIP_SUFFIXES:
                out.append((path, f"{SLUG}/resources/{part}/{path.relative_to(base).as_posix()}"))
    return out


def build(out_dir: Path) -> Path:
    meta = metadata()
    if meta["version"] != project_version():
        raise SystemExit(f"error: metadata.txt says version {meta['version']} but pyproject.toml {project_version()}; "
                         f"make them equal")
    icon = meta["icon"]
    items = files()
    if f"{SLUG}/{icon}" not in {arc for _, arc in items}:
        raise SystemExit(f"error: metadata.txt's icon {icon} is not in the plugin")
    client = [src for src, arc in items if arc == f"{SLUG}/service/client.py"]
    if client != [(ROOT / "backend" / "thalweg" / "client.py").resolve()]:
        raise SystemExit("error: plugin/service/client.py must be the symlink to backend/thalweg/client.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{SLUG}-{meta['version']}.zip"
    tmp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for src, arc in items:
            zf.write(src, arc)
    os.replace(tmp, target)  # atomic: a failed build leaves no half zip
    return target


def default_profiles_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ["APPDATA"]) / "QGIS" / "QGIS3" / "profiles"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "QGIS" / "QGIS3" / "profiles"
    return Path.home() / ".local" / "share" / "QGIS" / "QGIS3" / "profiles"


def plugins_folder(profiles_path: Path, profile: str) -> Path:
    folder = profiles_path / profile / "python" / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dev_install(profiles_path: Path, profile: str) -> Path:
    """<profile>/python/plugins/thalweg -> this checkout's plugin/ (edits show after a plugin reload)."""
    link = plugins_folder(profiles_path, profile) / SLUG
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise SystemExit(f"error: {link} exists and is not a symlink (an installed zip?); remove it first")
    link.symlink_to(PLUGIN, target_is_directory=True)
    return link


def install(zip_path: Path, profiles_path: Path, profile: str) -> Path:
    """Unpack the zip into <profile>/python/plugins (replacing an earlier install), as QGIS's installer does."""
    import shutil

    folder = plugins_folder(profiles_path, profile)
    dest = folder / SLUG
    if dest.is_symlink():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    with zipfile.ZipFile(zip_path) as zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist()}
        if tops != {SLUG}:
            raise SystemExit(f"error: {zip_path} must hold one top folder '{SLUG}', not {sorted(tops)}")
        zf.extractall(folder)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder of the zip (default dist/)")
    parser.add_argument("--dev-install", action="store_true", help="symlink the plugin into a QGIS profile instead")
    parser.add_argument("--install", type=Path, metavar="ZIP", help="unpack a built zip into a QGIS profile")
    parser.add_argument("--profiles-path", type=Path, default=None,
                        help=f"QGIS profiles folder (default {default_profiles_path()})")
    parser.add_argument("--profile", default="default", help="QGIS profile name (default 'default')")
    args = parser.parse_args(argv)
    profiles = args.profiles_path or default_profiles_path()
    if args.dev_install:
        print(f"linked {dev_install(profiles, args.profile)} -> {PLUGIN}")
        print("enable it in QGIS (Plugins > Manage and Install Plugins > Installed > Thalweg)")
    elif args.install:
        print(f"installed {install(args.install, profiles, args.profile)}")
    else:
        print(f"built {build(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
