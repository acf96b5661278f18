"""scripts/benchmark.py and scripts/speed_defaults.py: their variants are valid recipe arguments
and their reports pair and divide the right runs. (The runs themselves take half an hour; they
are not part of this suite.)"""

from pathlib import Path

import pytest

from hftl.run import parse_run_config
from hftl.testing import load_script

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name):
    return load_script(SCRIPTS / f"{name}.py")


@pytest.fixture(scope="module")
def benchmark():
    return load("benchmark")


def test_same_settings_variants_turn_the_speed_defaults_off(benchmark, tmp_path):
    for case in ("image_full", "text_full"):
        flags = benchmark.CASES[case]["variants"]["same"]
        data = ["--train_dir", "x"] if case.startswith("image") else ["--train_file", "x.csv"]
        argv = ["--model_name_or_path", "m", *data, "--output_dir", str(tmp_path), *flags]
        task = "image-classification" if case.startswith("image") else "text-classification"
        _, _, task_args, training_args, _ = parse_run_config(task, argv)
        if case == "image_full":
            assert training_args.channels_last is False
        else:
            assert task_args.pad_to_max_length
            assert training_args.train_sampling_strategy == "random"


def run(case, side, rep, seconds, accuracy=0.8, **extra):
    return {"case": case, "side": side, "rep": rep, "samples_per_s": 100 / seconds, "wall_s": seconds,
            "train_s": seconds, "peak_rss_mib": 1000.0, "accuracy": accuracy, **extra}  # fmt: skip


def test_benchmark_report_divides_each_variant_by_the_baseline_of_its_repetition(benchmark):
    runs = []
    for rep, base in enumerate((10.0, 20.0, 40.0)):  # the machine got slower: ratios stay put
        runs += [run("image_full", "baseline", rep, base),
                 run("image_full", "hftl:same", rep, base),
                 run("image_full", "hftl:defaults", rep, base / 2, accuracy=0.81),
                 run("image_fe", "baseline", rep, base),
                 run("image_fe", "hftl:defaults", rep, base / 10, feature_cache=True, warm_floor_s=base / 10 / 2),
                 run("image_fe", "floor", rep, base / 10 / 1.25, floor_s=base / 10 / 1.25)]  # fmt: skip
    meta = {"command": "c", "date": "d", "hardware": "h", "software": "s", "sizes": {},
            "image_size": 112, "wall_minutes": 1}  # fmt: skip
    rows = {
        line.split(" | ")[1]: line
        for line in benchmark.report({"meta": meta, "runs": runs}).splitlines()
        if line.startswith("| image_full")
    }
    assert "| 1.00 (1.00-1.00) |" in rows["same settings as the baseline"]
    assert "| 2.00 (2.00-2.00) | 0.50 (0.50-0.50) |" in rows["hftl defaults"]
    assert "+1.0 (+1.0-+1.0)" in rows["hftl defaults"]
    text = benchmark.report({"meta": meta, "runs": runs})
    assert "| image_fe | hftl defaults | 10 | 10.00 (10.00-10.00) |" in text
    assert "in a fresh process = 1.25 (1.25-1.25); / the same pass repeated" in text
    assert "kernels warm = 2.00 (2.00-2.00)." in text
    assert (
        "| cached feature extraction >= 8x the baseline's throughput | 10.00 (10.00-10.00) | yes | yes |"
        in text
    )
    assert "one-forward-pass floor (fresh process) | 1.25 (1.25-1.25) | yes | yes |" in text
    assert "faster with hftl's defaults (image) | 2.00 (2.00-2.00) | yes | yes |" in text


def test_speed_defaults_report_gives_median_and_range():
    speed = load("speed_defaults")
    saved = {
        "meta": {"command": "c", "date": "d", "hardware": "h", "software": "s", "minutes": 1,
                 "image": "i", "text": "t"},
        "rows": [{"knob": "channels_last", "model": "m", "speedups": [1.5, 1.2, 1.4]},
                 {"knob": "torch.compile", "model": "m", "speedups": [0.9], "note": "compile time 40 s"}],
    }  # fmt: skip
    lines = speed.report(saved).splitlines()
    assert "| channels_last | m | 1.40 (1.20-1.50) |  | default on for CNNs" in "\n".join(lines)
    assert any(
        line.startswith("| torch.compile | m | 0.90 (0.90-0.90) | compile time 40 s | opt-in")
        for line in lines
    )


def test_rerunning_some_knobs_replaces_only_their_rows():
    speed = load("speed_defaults")
    meta = {"command": "python scripts/speed_defaults.py", "minutes": 20.0, "date": "d1"}
    old = {"meta": meta, "rows": [{"knob": "a", "speedups": [1.0]}, {"knob": "torch.compile", "speedups": [9.0]},
                                  {"knob": "torch.compile", "speedups": [8.0]}, {"knob": "b", "speedups": [2.0]}]}  # fmt: skip
    new = {"meta": {"command": "python scripts/speed_defaults.py --knobs compile", "minutes": 5.0, "date": "d2"},
           "rows": [{"knob": "torch.compile", "speedups": [1.1]}]}  # fmt: skip
    merged = speed.merge(old, new)
    assert [(r["knob"], r["speedups"]) for r in merged["rows"]] == [
        ("a", [1.0]), ("torch.compile", [1.1]), ("b", [2.0])
    ]  # fmt: skip
    assert merged["meta"]["minutes"] == 25.0 and "--knobs compile" in merged["meta"]["command"]


def test_inference_report_divides_each_repetition_by_its_own_baseline(tmp_path):
    bench = load("inference_benchmark")
    runs = [{"case": "text", "side": side, "rep": rep, "seconds": seconds, "count": 100}
            for side, rep, seconds in (("hftl", 0, 1.0), ("pipeline", 0, 2.0),
                                       ("hftl", 1, 2.0), ("pipeline", 1, 2.0))]  # fmt: skip
    onnx = [{"case": "text", "backend": backend, "rep": 0, "bytes": 2**20, "latency_ms": ms,
             "per_second": speed}
            for backend, ms, speed in (("pytorch", 10.0, 50.0), ("onnxruntime int8", 4.0, 150.0))]  # fmt: skip
    text = bench.report(runs, "cmd", "hw", "v", onnx)
    row = next(line for line in text.splitlines() if line.startswith("| text | all-MiniLM"))
    # ratios per repetition: 100/s / 50/s = 2.0 and 50/s / 50/s = 1.0; median 1.5
    assert "| 1.50 (1.00-2.00) |" in row and row.endswith("| 13.3 |")  # 1000 / 75 inputs/s
    int8 = next(line for line in text.splitlines() if "onnxruntime int8" in line)
    assert "| 0.40 (0.40-0.40) |" in int8 and "| 3.00 (3.00-3.00) |" in int8
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\ntable\n")
    bench.write_section(doc, text)
    bench.write_section(doc, text.replace("cmd", "cmd2"))  # replaced, not appended twice
    written = doc.read_text()
    assert written.startswith("# Benchmarks\n\ntable\n") and written.count(bench.SECTION_START) == 1
    assert "cmd2" in written and "`cmd`" not in written


def test_scaling_report_compares_each_size_with_the_smallest_per_example():
    scaling = load("extraction_scaling")
    runs = [{"size": size, "cache": cache, "seconds": seconds, "peak_growth_mib": growth,
             "features_mib": size / 1000, "dims": [size, 32]}
            for size, cache, seconds, growth in ((1000, "disk", 0.1, 1.5), (10000, "disk", 2.0, 11.0),
                                                 (10000, "memory", 1.0, 30.0))]  # fmt: skip
    rows = [
        line for line in scaling.report(runs, "cmd", "hw").splitlines() if line.startswith("| 1")
    ]
    assert rows[0].startswith("| 1,000 | disk | 0.1 | 10000 | 1.00 | 1.5 | 1.0 | 0.5 |")
    assert "| 2.00 |" in rows[1] and rows[1].endswith("| 11.0 | 10.0 | 1.0 |")  # 2x linear
    assert rows[2].startswith("| 10,000 | memory | 1.0 | 10000 | 1.00 |")
