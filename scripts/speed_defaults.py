"""Each candidate speed default, measured on its own, on and off, before it becomes a default.

    python scripts/speed_defaults.py            # the offline assets -> docs/speed_defaults.md
    python scripts/speed_defaults.py --quick    # tiny random models, to check the script runs

A measurement is the median time of one training step (forward, backward, AdamW step) over
``--steps`` steps after two warm-up steps, for the knob off and on, alternating, ``--reps``
times, in one process; the table gives off / on as a speed-up (median, min-max over repetitions).
Knobs that act on a whole epoch (padding, dataloader workers, frozen blocks) time the epoch.
Architectures other than the offline assets are timed with random weights: speed depends on
the shapes, not on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGE_ASSET = "efficientnet-lite0 (asset)"  # with --quick: a timm resnet18 at 32 px
sys.path.insert(0, str(ROOT / "scripts"))


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_seconds(
    model, batches, *, steps, autocast=None, compiled=None, params=None
) -> tuple[float, float]:
    """(median seconds per training step, seconds of all steps, warm-up included) over
    ``batches`` in turn; the optimizer steps ``params`` (default: those with requires_grad)."""
    run = model if compiled is None else compiled
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    times = []
    for i in range(steps + 2):
        batch = batches[i % len(batches)]
        sync()
        start = time.perf_counter()
        with torch.autocast(device().type, dtype=autocast, enabled=autocast is not None):
            loss = run(**batch).loss
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)  # also gradients of parameters outside the optimizer
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]), sum(times)


# --------------------------------------------------------------------------------------------
# Models and batches
# --------------------------------------------------------------------------------------------


def image_model(name: str, paths: dict, quick: bool):
    from transformers import (
        AutoModelForImageClassification,
        TimmWrapperConfig,
        TimmWrapperForImageClassification,
    )

    if name == IMAGE_ASSET:
        if quick:
            from hftl.testing import tiny_timm_resnet

            return tiny_timm_resnet(num_labels=10)
        return AutoModelForImageClassification.from_pretrained(
            paths["efficientnet-lite0"], num_labels=10, ignore_mismatched_sizes=True
        )
    return TimmWrapperForImageClassification(TimmWrapperConfig(architecture=name, num_labels=10))


def image_batches(size: int, batch: int, channels_last: bool, n: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        pixels = torch.randn(batch, 3, size, size, generator=generator)
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (batch,), generator=generator)
        out.append({"pixel_values": pixels.to(device()), "labels": labels.to(device())})
    return out


def text_model(paths: dict, quick: bool, attn: str = "sdpa"):
    from transformers import AutoModelForSequenceClassification

    if quick:
        from hftl.testing import tiny_bert

        model = tiny_bert()
        model.set_attn_implementation(attn)
        return model
    return AutoModelForSequenceClassification.from_pretrained(
        paths["minilm"], num_labels=2, attn_implementation=attn
    )


def reviews(paths: dict, quick: bool, n: int) -> tuple[list[str], list[int]]:
    import csv

    if quick:
        from hftl.testing import toy_reviews

        rows = toy_reviews(n, seed=0)
    else:
        with open(Path(paths["rotten-tomatoes"]) / "train.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))[:n]
    names = sorted({r["label"] for r in rows})
    return [r["text"] for r in rows], [names.index(r["label"]) for r in rows]


def tokenizer_for(paths: dict, quick: bool, workdir: Path):
    from transformers import AutoTokenizer

    if quick:
        from hftl.testing import save_tiny_text_checkpoint

        save_tiny_text_checkpoint(workdir / "bert")
        return AutoTokenizer.from_pretrained(workdir / "bert")
    return AutoTokenizer.from_pretrained(paths["minilm"])


def text_batches(tokenizer, texts, labels, batch: int, max_length: int, mode: str) -> list[dict]:
    """Batches of ``batch`` reviews: padded to max_length, or per batch in random / grouped order."""
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    if mode == "grouped":  # what LengthGroupedSampler does within a mega-batch
        lengths = [
            len(tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts
        ]
        order = sorted(order, key=lambda i: -lengths[i])
    out = []
    for start in range(0, len(order) - batch + 1, batch):
        chosen = order[start : start + batch]
        encoded = tokenizer(
            [texts[i] for i in chosen], truncation=True, max_length=max_length,
            padding="max_length" if mode == "max_length" else True, return_tensors="pt",
        )  # fmt: skip
        encoded["labels"] = torch.tensor([labels[i] for i in chosen])
        out.append({k: v.to(device()) for k, v in encoded.items()})
    return out


# --------------------------------------------------------------------------------------------
# The knobs
# --------------------------------------------------------------------------------------------


def knob_channels_last(ctx) -> list[dict]:
    rows = []
    for name in ctx["image_models"]:
        off_on = []
        for rep in range(ctx["reps"]):
            pair = {}
            for setting in (False, True) if rep % 2 == 0 else (True, False):
                torch.manual_seed(0)
                model = image_model(name, ctx["paths"], ctx["quick"]).to(device())
                if setting:
                    model = model.to(memory_format=torch.channels_last)
                batches = image_batches(ctx["image_size"], ctx["image_batch"], setting)
                pair[setting] = step_seconds(model, batches, steps=ctx["steps"])[0]
            off_on.append(pair[False] / pair[True])
        rows.append({"knob": "channels_last", "model": name, "speedups": off_on})
    return rows


def knob_bf16(ctx) -> list[dict]:
    rows = []
    for name, make, batches in ctx["both_models"]():
        speedups = []
        for rep in range(ctx["reps"]):
            times = {}
            for setting in (None, torch.bfloat16) if rep % 2 == 0 else (torch.bfloat16, None):
                torch.manual_seed(0)
                times[setting] = step_seconds(
                    make(), batches, steps=ctx["steps"], autocast=setting
                )[0]
            speedups.append(times[None] / times[torch.bfloat16])
        rows.append({"knob": "bf16 autocast", "model": name, "speedups": speedups})
    return rows


def knob_sdpa(ctx) -> list[dict]:
    batches = text_batches(
        ctx["tokenizer"], *ctx["reviews"], ctx["text_batch"], ctx["max_length"], "grouped"
    )
    speedups = []
    for rep in range(ctx["reps"]):
        times = {}
        for attn in ("eager", "sdpa") if rep % 2 == 0 else ("sdpa", "eager"):
            torch.manual_seed(0)
            model = text_model(ctx["paths"], ctx["quick"], attn).to(device())
            times[attn] = step_seconds(model, batches, steps=ctx["steps"])[0]
        speedups.append(times["eager"] / times["sdpa"])
    return [{"knob": "SDPA attention (vs eager)", "model": ctx["text_name"], "speedups": speedups}]


def knob_compile(ctx) -> list[dict]:
    rows = []
    for name, make, batches in ctx["both_models"]():
        speedups, compile_s = [], []
        for _rep in range(ctx["reps"]):
            torch.manual_seed(0)
            eager, eager_total = step_seconds(make(), batches, steps=ctx["steps"])
            torch._dynamo.reset()  # cold: no compiled graph from the last repetition or run
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="hftl-inductor-")
            torch._inductor.config.fx_graph_cache = False
            torch.manual_seed(0)
            model = make()
            compiled_step, compiled_total = step_seconds(
                model, batches, steps=ctx["steps"], compiled=torch.compile(model)
            )
            speedups.append(eager / compiled_step)
            compile_s.append(compiled_total - eager_total)
        rows.append({"knob": "torch.compile", "model": name, "speedups": speedups,
                     "note": f"steady state; compiling cost {statistics.median(compile_s):.0f} s more over "
                             f"{ctx['steps'] + 2} steps (cold cache)"})  # fmt: skip
    return rows


def knob_padding(ctx) -> list[dict]:
    """One epoch over the same reviews: padded to max length vs per-batch padding (+ grouping)."""
    args = (ctx["tokenizer"], *ctx["reviews"], ctx["text_batch"], ctx["max_length"])
    batches = {mode: text_batches(*args, mode) for mode in ("max_length", "random", "grouped")}
    epoch = {}
    results = {"random": [], "grouped": []}
    modes = ["max_length", "random", "grouped"]
    for rep in range(ctx["reps"]):
        for mode in modes[rep % 3 :] + modes[: rep % 3]:
            torch.manual_seed(0)
            model = text_model(ctx["paths"], ctx["quick"]).to(device())
            step, _ = step_seconds(model, batches[mode], steps=len(batches[mode]))
            epoch[mode] = step * len(batches[mode])
        for mode in results:
            results[mode].append(epoch["max_length"] / epoch[mode])
    tokens = {m: sum(b["input_ids"].numel() for b in bs) for m, bs in batches.items()}
    return [
        {"knob": "per-batch padding (vs max_length)", "model": ctx["text_name"], "speedups": results["random"],
         "note": f"{tokens['random'] / tokens['max_length']:.0%} of the tokens"},
        {"knob": "per-batch padding + length grouping (vs max_length)", "model": ctx["text_name"],
         "speedups": results["grouped"], "note": f"{tokens['grouped'] / tokens['max_length']:.0%} of the tokens"},
    ]  # fmt: skip


def knob_workers(ctx) -> list[dict]:
    """One epoch of full fine-tuning with images decoded and resized on the fly by 0 or 2 workers."""
    from datasets import load_dataset
    from transformers import AutoImageProcessor

    from hftl.tasks.image_classification import collate_images, image_batch_transform

    processor = AutoImageProcessor.from_pretrained(ctx["image_model_dir"])
    data = load_dataset("imagefolder", data_dir=ctx["train_dir"], split="train")
    data = data.shuffle(seed=0).select(range(min(ctx["epoch_images"], len(data))))
    data.set_transform(image_batch_transform(processor, "image", "label", train=False))

    def epoch_seconds(workers: int) -> float:
        torch.manual_seed(0)
        model = image_model(IMAGE_ASSET, ctx["paths"], ctx["quick"]).to(device())
        loader = torch.utils.data.DataLoader(data, batch_size=ctx["image_batch"], num_workers=workers,
                                             collate_fn=collate_images, pin_memory=device().type == "cuda")  # fmt: skip
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        start = time.perf_counter()
        for batch in loader:
            loss = model(**{k: v.to(device(), non_blocking=True) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    speedups, share = [], []
    for rep in range(ctx["reps"]):
        times = {w: epoch_seconds(w) for w in ((0, 2) if rep % 2 == 0 else (2, 0))}
        speedups.append(times[0] / times[2])
        start = time.perf_counter()
        for _ in torch.utils.data.DataLoader(
            data, batch_size=ctx["image_batch"], collate_fn=collate_images
        ):
            pass
        share.append((time.perf_counter() - start) / times[0])
    return [{"knob": "2 dataloader workers (vs 0)", "model": f"{IMAGE_ASSET}, on-the-fly preprocessing",
             "speedups": speedups,
             "note": f"preprocessing is {statistics.median(share):.0%} of a 0-worker epoch"}]  # fmt: skip


def knob_frozen_backward(ctx) -> list[dict]:
    """Top 2 blocks + head training: frozen below by requires_grad=False (no backward through
    them) vs kept out of the optimizer only (backward computes gradients that are thrown away)."""
    from hftl.layers import build_layer_map
    from hftl.strategies import apply_strategy

    batches = image_batches(ctx["image_size"], ctx["image_batch"], False)
    speedups = []
    for rep in range(ctx["reps"]):
        times = {}
        for setting in (
            ("optimizer only", "requires_grad")
            if rep % 2 == 0
            else ("requires_grad", "optimizer only")
        ):
            torch.manual_seed(0)
            model = image_model(IMAGE_ASSET, ctx["paths"], ctx["quick"]).to(device())
            layer_map = build_layer_map(model)
            apply_strategy(model, layer_map, "partial", num_trainable_layers=2)
            trainable = [p for p in model.parameters() if p.requires_grad]
            if setting == "optimizer only":
                model.requires_grad_(True)  # gradients everywhere, only the top ones applied
            times[setting] = step_seconds(model, batches, steps=ctx["steps"], params=trainable)[0]
        speedups.append(times["optimizer only"] / times["requires_grad"])
    return [{"knob": "no backward below the lowest trainable block", "model": f"{IMAGE_ASSET}, top 2 blocks",
             "speedups": speedups}]  # fmt: skip


KNOBS = {
    "channels_last": knob_channels_last,
    "bf16": knob_bf16,
    "sdpa": knob_sdpa,
    "padding": knob_padding,
    "workers": knob_workers,
    "frozen_backward": knob_frozen_backward,
    "compile": knob_compile,
}


# --------------------------------------------------------------------------------------------
# Driver and report
# --------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--knobs", nargs="+", default=list(KNOBS), choices=list(KNOBS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--output", default=str(ROOT / "docs" / "speed_defaults.md"))
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if args.report_only:
        saved = json.loads(output.with_suffix(".json").read_text())
        output.write_text(report(saved))
        return saved
    workdir = Path(tempfile.mkdtemp(prefix="hftl-knobs-"))
    if args.quick:
        from hftl.testing import save_tiny_image_checkpoint, write_toy_image_folder

        save_tiny_image_checkpoint(workdir / "image-model", "timm-resnet", num_labels=3)
        write_toy_image_folder(workdir / "train", per_class=16, seed=0)
        paths = {"efficientnet-lite0": str(workdir / "image-model")}
        image_dir, train_dir = workdir / "image-model", workdir / "train"
    else:
        from hftl.assets import fetch

        paths = {
            name: str(fetch(name))
            for name in ("efficientnet-lite0", "minilm", "rotten-tomatoes", "mnist")
        }
        image_dir, train_dir = Path(paths["efficientnet-lite0"]), Path(paths["mnist"]) / "train"
    ctx = {
        "paths": paths, "quick": args.quick, "reps": 1 if args.quick else args.reps,
        "steps": 2 if args.quick else args.steps, "image_size": 32 if args.quick else 112,
        "image_batch": 8 if args.quick else 32, "text_batch": 16, "max_length": 48 if args.quick else 128,
        "image_models": [IMAGE_ASSET] + ([] if args.quick else ["resnet18", "resnet50", "convnext_atto"]),
        "text_name": "tiny BERT" if args.quick else "all-MiniLM-L6-v2 (asset)",
        "tokenizer": tokenizer_for(paths, args.quick, workdir),
        "image_model_dir": image_dir, "train_dir": train_dir, "epoch_images": 64 if args.quick else 256,
    }  # fmt: skip
    ctx["reviews"] = reviews(paths, args.quick, 64 if args.quick else 320)

    def both_models():
        image = lambda: image_model(IMAGE_ASSET, paths, args.quick).to(device())  # noqa: E731
        text = lambda: text_model(paths, args.quick).to(device())  # noqa: E731
        text_data = text_batches(
            ctx["tokenizer"], *ctx["reviews"], ctx["text_batch"], ctx["max_length"], "grouped"
        )
        return [(IMAGE_ASSET, image, image_batches(ctx["image_size"], ctx["image_batch"], False)),
                (ctx["text_name"], text, text_data[:4])]  # fmt: skip

    ctx["both_models"] = both_models
    started = time.perf_counter()
    rows = []
    for knob in args.knobs:
        for row in KNOBS[knob](ctx):
            rows.append(row)
            print(json.dumps(row), flush=True)
    import transformers

    from hftl.outputs import describe_hardware

    saved = {
        "meta": {
            "command": "python scripts/speed_defaults.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "hardware": describe_hardware(),
            "software": f"torch {torch.__version__}, transformers {transformers.__version__}",
            "quick": args.quick, "minutes": round((time.perf_counter() - started) / 60, 1),
            "image": f"{ctx['image_size']} px, batch {ctx['image_batch']}",
            "text": f"batch {ctx['text_batch']}, max_length {ctx['max_length']}",
        },
        "rows": rows,
    }  # fmt: skip
    previous = output.with_suffix(".json")
    if set(args.knobs) != set(KNOBS) and previous.exists():  # replace these knobs' rows only
        saved = merge(json.loads(previous.read_text()), saved)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(saved, indent=2))
    output.write_text(report(saved))
    print(f"wrote {output}")
    return saved


def merge(old: dict, new: dict) -> dict:
    """``old`` with the rows of the knobs ``new`` measured replaced, in place, by ``new``'s."""
    ran = {row["knob"] for row in new["rows"]}
    rows, inserted = [], False
    for row in old["rows"]:
        if row["knob"] not in ran:
            rows.append(row)
        elif not inserted:
            rows += new["rows"]
            inserted = True
    if not inserted:
        rows += new["rows"]
    meta = dict(old["meta"])
    meta["command"] = f"{old['meta']['command']}`, then `{new['meta']['command']}"
    meta["minutes"] = round(old["meta"]["minutes"] + new["meta"]["minutes"], 1)
    meta["date"] = new["meta"]["date"]
    return {"meta": meta, "rows": rows}


DECISIONS = {
    "channels_last": "default on for CNNs with batch norm (`--channels_last`, unset = auto); off for others",
    "bf16 autocast": "not a default on CPU; `--bf16` on GPUs that support it",
    "SDPA attention (vs eager)": "transformers' own default; kept",
    "per-batch padding (vs max_length)": "default (DataCollatorWithPadding); `--pad_to_max_length` restores fixed length",
    "per-batch padding + length grouping (vs max_length)": "default in the sentiment recipe (`train_sampling_strategy: group_by_length`)",
    "2 dataloader workers (vs 0)": "not a default; `--dataloader_num_workers` for machines with spare cores / GPUs",
    "no backward below the lowest trainable block": "always: frozen parameters get requires_grad=False",
    "torch.compile": "opt-in (`--torch_compile true`): little or no steady-state gain here, paid for up front (note)",
}  # fmt: skip


def report(saved: dict) -> str:
    info = saved["meta"]
    lines = [
        "# Speed defaults, measured one at a time",
        "",
        "Generated by `scripts/speed_defaults.py`; do not edit by hand, rerun it. The end-to-end "
        "comparison with the example pipeline is in [benchmarks.md](benchmarks.md).",
        "",
        f"- Command: `{info['command']}`",
        f"- Date: {info['date']}; hardware: {info['hardware']}; {info['software']}; {info['minutes']} min",
        f"- Images: {info['image']}; text: {info['text']}, real reviews. Speed-up = time with the knob "
        "off / time with it on, per training step (per epoch for padding and workers), median "
        "(min-max) over repetitions that alternate the order. Below 1.00 = the knob slows it down.",
        "",
        "| knob | model | speed-up | note | decision |",
        "|---|---|---|---|---|",
    ]
    for row in saved["rows"]:
        values = row["speedups"]
        spread = f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
        lines.append(
            f"| {row['knob']} | {row['model']} | {spread} | {row.get('note', '')} | "
            f"{DECISIONS.get(row['knob'], '')} |"
        )
    lines += [
        "",
        "Pinned memory only matters for copies to a GPU; Trainer pins by default "
        "(`dataloader_pin_memory`), hftl leaves it so. Preprocessing is not cached for the "
        "other strategies: the note on the workers row gives its share of an epoch (that row "
        "runs at the image model's own input size, decoding and resizing real images).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
