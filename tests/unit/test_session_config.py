"""TF Serving's session config file, as the model server stand-in reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.modelserver.session_config import cpu_has_fast_bf16, read_session_config
from tests.conftest import ROOT

BF16_COMPONENT = ROOT / "deploy" / "components" / "tfserving-bf16" / "session.config"


def test_the_bf16_component_turns_on_onednn_bfloat16_and_nothing_else() -> None:
    config = read_session_config(BF16_COMPONENT)
    assert config.rewrites == {"auto_mixed_precision_onednn_bfloat16": True}
    assert config.bfloat16 and config.ignored == []


def test_off_toggles_are_kept_and_fields_the_stand_in_does_not_honour_are_named(tmp_path: Path) -> None:
    path = tmp_path / "session.config"
    path.write_text(
        "intra_op_parallelism_threads: 4\n"
        "graph_options { rewrite_options { remapping: OFF auto_mixed_precision_onednn_bfloat16: ON "
        "min_graph_nodes: 3 } }\n"
    )
    config = read_session_config(path)
    assert config.rewrites == {"remapping": False, "auto_mixed_precision_onednn_bfloat16": True}
    assert sorted(config.ignored) == ["intra_op_parallelism_threads", "min_graph_nodes"]


def test_an_unreadable_file_stops_the_server_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "session.config"
    path.write_text("graph_options { rewrite_options { no_such_rewrite: ON } }\n")
    with pytest.raises(SystemExit, match=r"session\.config"):
        read_session_config(path)
    with pytest.raises(SystemExit, match=r"missing\.config"):
        read_session_config(tmp_path / "missing.config")


def test_fast_bfloat16_is_read_from_the_cpu_vendor_and_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"

    def cpu(vendor: str, flags: str) -> Path:
        cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu avx512f {flags}\n")
        return cpuinfo

    assert not cpu_has_fast_bf16(cpu("GenuineIntel", "avx512_bf16 amx_tile"))  # slower than float32 there
    assert cpu_has_fast_bf16(cpu("GenuineIntel", "avx512_bf16 amx_bf16 amx_tile amx_int8"))
    assert cpu_has_fast_bf16(cpu("AuthenticAMD", "avx512_bf16 avx512_vnni"))  # Zen 4
    assert not cpu_has_fast_bf16(cpu("AuthenticAMD", "avx512_vnni"))  # Zen 3 has no bfloat16
    assert not cpu_has_fast_bf16(tmp_path / "absent")
