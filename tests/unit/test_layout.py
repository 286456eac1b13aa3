"""What each room imports: serving stays light, hnswlib stays behind index.py."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SERVICES = ["featurizer", "classifier", "recommender", "modelserver"]  # one image each


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_the_classifier_needs_neither_tensorflow_nor_its_serving_api() -> None:
    loaded = modules_after_import("services.classifier.servicer")
    assert not {"tensorflow", "tensorflow_serving", "keras"} & {m.split(".")[0] for m in loaded}
    assert "pip install" not in (ROOT / "services" / "classifier" / "Dockerfile").read_text()  # the base's packages


def test_serving_recommender_loads_no_build_or_training_packages() -> None:
    loaded = modules_after_import("services.recommender.api.servicer")
    assert not {"sklearn", "tqdm", "tensorflow", "keras"} & {m.split(".")[0] for m in loaded}


def test_hnswlib_is_imported_by_index_py_only() -> None:
    users = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "services").rglob("*.py")
        if "import hnswlib" in p.read_text()
    ]
    assert users == ["services/recommender/index/graph.py"]


def test_services_do_not_import_training_devtools_or_each_other() -> None:
    for service in SERVICES:
        for path in (ROOT / "services" / service).rglob("*.py"):
            text = path.read_text()
            others = [s for s in SERVICES if s != service and f"services.{s}" in text]
            imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
            tools = [line for line in imports if line.split()[1].split(".")[0] in {"training", "devtools"}]
            assert not others and not tools, (path, others, tools)


def test_offline_tools_live_outside_services() -> None:
    assert not (ROOT / "services" / "classifier" / "training").exists()
    assert not (ROOT / "services" / "common" / "localrun.py").exists()
    assert Path(ROOT / "training" / "ear" / "convert.py").exists() and Path(ROOT / "devtools" / "localrun.py").exists()


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (dotted names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _third_party_imports(service: str) -> set[str]:
    """Top-level names of the packages a service's code imports, following its imports of
    services.* (so services/common counts only where the service uses it)."""
    todo = list((ROOT / "services" / service).rglob("*.py"))
    seen: set[Path] = set()
    packages: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "services":
                module = ROOT.joinpath(*name.split("."))
                todo += [p for p in (module.with_suffix(".py"), module / "__init__.py") if p.is_file()]
            elif top not in sys.stdlib_module_names and top not in {"musicrec", "__future__"}:
                packages.add(top)
    return packages


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_image_installs_what_its_service_imports() -> None:
    # each image: deploy/python-base (services/common/requirements.in) + the service's own list
    def listed(path: Path) -> set[str]:
        names = (line.split("#")[0].strip() for line in path.read_text().splitlines())
        return {_canonical(name) for name in names if name}

    distributions = importlib.metadata.packages_distributions()
    common = listed(ROOT / "services" / "common" / "requirements.in")
    for service in SERVICES:
        installed = common | listed(ROOT / "services" / service / "requirements.in")
        missing = [top for top in sorted(_third_party_imports(service))
                   if not {_canonical(d) for d in distributions.get(top, [top])} & installed]
        assert not missing, f"services/{service} imports {missing}, which its image does not install"
