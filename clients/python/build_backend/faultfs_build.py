"""A minimal PEP 517 build backend: builds the pure-Python wheel (and an
sdist) of this project with the standard library alone, so installing it
needs no setuptools or network. Reads the few [project] fields it needs from
pyproject.toml (tomllib on 3.11+, else a reader for this file's simple form)."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "faultfs"


def _project() -> Dict[str, object]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        data = f.read()
    try:
        import tomllib  # Python 3.11+
        return tomllib.loads(data.decode())["project"]  # type: ignore[no-any-return]
    except ImportError:
        text = data.decode()
        field = lambda key: re.search(r'^%s = "([^"]*)"' % key, text, re.M).group(1)  # noqa: E731
        return {"name": field("name"), "version": field("version"), "description": field("description"),
                "requires-python": field("requires-python")}


def _metadata(project: Dict[str, object]) -> str:
    lines = ["Metadata-Version: 2.1", "Name: %s" % project["name"], "Version: %s" % project["version"],
             "Summary: %s" % project["description"], "Requires-Python: %s" % project["requires-python"],
             "License: MIT"]
    for classifier in project.get("classifiers", []) or []:  # type: ignore[union-attr]
        lines.append("Classifier: %s" % classifier)
    return "\n".join(lines) + "\n"


_ENTRY_POINTS = "[pytest11]\nfaultfs.pytest_plugin = faultfs.pytest_plugin\n"
_WHEEL = "Wheel-Version: 1.0\nGenerator: faultfs_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _dist_info(project: Dict[str, object]) -> str:
    return "%s-%s.dist-info" % (project["name"], project["version"])


def _sources() -> List[Tuple[str, str]]:
    """(path in the wheel, file on disk) of the package."""
    base = os.path.join(ROOT, "src")
    out = []
    for folder, _, names in os.walk(os.path.join(base, PACKAGE)):
        for name in sorted(names):
            if name.endswith((".py", ".typed")):
                path = os.path.join(folder, name)
                out.append((os.path.relpath(path, base), path))
    return sorted(out)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_dist_info(directory: str, project: Dict[str, object]) -> str:
    name = _dist_info(project)
    os.makedirs(os.path.join(directory, name), exist_ok=True)
    for file, text in (("METADATA", _metadata(project)), ("WHEEL", _WHEEL), ("entry_points.txt", _ENTRY_POINTS)):
        with open(os.path.join(directory, name, file), "w") as f:
            f.write(text)
    return name


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[dict] = None) -> str:
    return _write_dist_info(metadata_directory, _project())


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None,
                metadata_directory: Optional[str] = None) -> str:
    project = _project()
    wheel_name = "%s-%s-py3-none-any.whl" % (project["name"], project["version"])
    info = _dist_info(project)
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as wheel:
        files = [(arc, open(path, "rb").read()) for arc, path in _sources()]
        files += [(info + "/METADATA", _metadata(project).encode()), (info + "/WHEEL", _WHEEL.encode()),
                  (info + "/entry_points.txt", _ENTRY_POINTS.encode())]
        for arc, data in files:
            wheel.writestr(arc, data)
            records.append(_record_line(arc, data))
        records.append(info + "/RECORD,,")
        wheel.writestr(info + "/RECORD", "\n".join(records) + "\n")
    return wheel_name


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    project = _project()
    base = "%s-%s" % (project["name"], project["version"])
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for rel in ["pyproject.toml", "README.md", "build_backend/faultfs_build.py"]:
            tar.add(os.path.join(ROOT, rel), arcname=base + "/" + rel)
        for arc, path in _sources():
            tar.add(path, arcname=base + "/src/" + arc)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = _metadata(project).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return name
