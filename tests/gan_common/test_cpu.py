"""gan_common.cpu: the CPU feature flags the trainer (XLA) and the sampler (bfloat16) choose by."""

from gan_common.cpu import cpu_flags


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\nbugs\t\t: spectre_v1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512f", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()
