"""What each room imports: serving stays light, hnswlib stays behind index.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_serving_recommender_loads_no_build_or_training_packages() -> None:
    loaded = modules_after_import("services.recommender.servicer")
    assert not {"sklearn", "tqdm", "tensorflow", "keras"} & {m.split(".")[0] for m in loaded}


def test_hnswlib_is_imported_by_index_py_only() -> None:
    users = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "services").rglob("*.py")
        if "import hnswlib" in p.read_text()
    ]
    assert users == ["services/recommender/index.py"]


def test_services_do_not_import_training_devtools_or_each_other() -> None:
    services = ["featurizer", "classifier", "recommender", "modelserver"]
    for service in services:
        for path in (ROOT / "services" / service).rglob("*.py"):
            text = path.read_text()
            others = [s for s in services if s != service and f"services.{s}" in text]
            assert not others and "from training" not in text and "devtools" not in text, (path, others)


def test_offline_tools_live_outside_services() -> None:
    assert not (ROOT / "services" / "classifier" / "training").exists()
    assert not (ROOT / "services" / "common" / "localrun.py").exists()
    assert Path(ROOT / "training" / "train.py").exists() and Path(ROOT / "devtools" / "localrun.py").exists()
