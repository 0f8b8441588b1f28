"""bench/bench_semantic.py runs end to end on the authors' tags (it broke once unnoticed when an
API it calls changed) and reports the counts docs/semantic.md gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_semantic.py"


def test_semantic_benchmark_links_coarsens_and_loads_the_authors_tags(filtag_vgg16_file: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--file", str(filtag_vgg16_file), "--store", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = tmp_path.glob("semantic-*.json")
    report = json.loads(result.read_text())
    assert report["source"] == str(filtag_vgg16_file)
    assert report["synsets_in_closure"] > report["classes_linked"] > 990
    assert "load into embedded store" in report["seconds"]
    assert "219 with several tags; of these 170 (78%)" in report["summary"]
