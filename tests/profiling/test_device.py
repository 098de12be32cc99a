"""The device card: fields, a stable device id, cpuinfo parsing, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

from edgeformer.profiling.device import _ISA_OF_INTEREST, _isa_flags, device_card, parse_cpuinfo

X86_CPUINFO = """\
processor	: 0
model name	: Intel(R) Xeon(R) Platinum 8480+
physical id	: 0
core id		: 0
flags		: fpu sse avx2 fma avx512f avx512vnni amx_tile amx_int8 amx_bf16
processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8480+
physical id	: 0
core id		: 0
flags		: fpu sse avx2 fma avx512f avx512vnni amx_tile amx_int8 amx_bf16
processor	: 2
model name	: Intel(R) Xeon(R) Platinum 8480+
physical id	: 1
core id		: 0
flags		: fpu sse avx2 fma avx512f avx512vnni amx_tile amx_int8 amx_bf16
"""

ARM_CPUINFO = """\
processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp i8mm
CPU implementer	: 0x41
processor	: 1
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp i8mm
"""


def test_card_has_every_field():
    card = device_card(backend="ort", threads=2)
    assert card.cpu_model
    assert card.physical_cores >= 1
    assert card.logical_cores >= 1
    assert 1 <= card.usable_cpus <= card.logical_cores
    assert set(card.isa) <= set(_ISA_OF_INTEREST)
    assert card.os and card.kernel and card.python.count(".") == 2
    assert card.backend == "ort" and card.runtime.startswith("onnxruntime ")
    assert "CPUExecutionProvider" in card.providers
    assert {"onnxruntime", "onnx", "numpy"} <= set(card.libraries)
    assert card.threads == 2
    d = card.to_dict()
    assert d["device_id"] == card.device_id
    json.dumps(d)  # serializable as is


def test_device_id_is_stable_and_names_hardware_and_backend_only():
    a = device_card(backend="ort", threads=1)
    b = device_card(backend="ort", threads=4)
    assert a.device_id == b.device_id == device_card().device_id
    assert len(a.device_id) == 12 and int(a.device_id, 16) >= 0
    assert device_card(backend="openvino").device_id != a.device_id


def test_parse_x86_cpuinfo_counts_physical_cores_and_normalises_flags():
    info = parse_cpuinfo(X86_CPUINFO)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["physical_cores"] == 2  # two sockets, one core each; processor 1 is a hyperthread
    isa = _isa_flags(info["flags"], "x86_64")
    assert isa == ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16")


def test_parse_arm_cpuinfo_reports_neon_and_dot_product():
    info = parse_cpuinfo(ARM_CPUINFO)
    assert "model" not in info  # many ARM kernels print no model name; the card falls back to platform
    isa = _isa_flags(info["flags"], "aarch64")
    assert {"neon", "asimddp", "i8mm"} <= set(isa)
    assert "avx2" not in isa


def test_device_card_does_not_import_torch():
    code = (
        "import sys; from edgeformer.profiling.device import device_card; "
        "card = device_card(); assert card.libraries; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
