"""Configs and camera values on bad input, as ``benchmarks/fuzz_readers.py`` mutates them (40 seeded mutations of
each kind here, 400 in the benchmark): a ``--config`` preset and a ``key=value`` command line driven through
train.py's own path up to the first work, scenes with mutated intrinsics / poses / duplicated images read as a
training run reads them. Each ends accepted or in a one-line error: never a generic exception, a hang or a
crash (each kind's cases run in a child process under an address-space limit, as the benchmark runs them)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = 40


def _benchmark():
    spec = importlib.util.spec_from_file_location("fuzz_readers", ROOT / "benchmarks" / "fuzz_readers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_readers = _benchmark()


@pytest.mark.parametrize("reader", ["config_yaml", "config_args", "cameras_transforms", "cameras_colmap"])
def test_fuzzed_configs_and_cameras_end_in_one_line(reader):
    result = fuzz_readers.fuzz(reader, CASES, seed=0, timeout=10.0, mem_gb=8.0)
    counts, examples = result["counts"], result["examples"]
    bad = {kind: examples[kind] for kind in (*fuzz_readers.generic_kinds(counts), "hang", "crash") if kind in examples}
    assert not bad, "\n".join(f"{kind}: {line}" for kind, lines in bad.items() for line in lines)
    assert sum(counts.values()) == CASES and counts["DffError"] > 0 and result["multiline"] == 0
