"""Every environment variable is a Setting declared once, and docs/configuration.md is generated from them."""

from __future__ import annotations

import re

from devtools import config_doc
from devtools.localrun import ROOT

READS = re.compile(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(|\benv_(int|float|str|bool|file)\(|read_secret\(")


def test_the_configuration_table_is_generated_from_the_declarations() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == config_doc.render(), (
        "docs/configuration.md is stale: python -m devtools.config_doc")


def test_services_read_the_environment_only_through_settings() -> None:
    readers = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "services").rglob("*.py") if path.name != "config.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1) if READS.search(line)
    ]
    assert readers == [], f"read through a Setting (services/common/config.py) instead: {readers}"
