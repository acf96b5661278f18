"""Model cards made from a finished run's own files.

    card = write_card("out/sentiment", repo_id="me/minilm-sentiment")   # README.md + 2 PNGs

The metadata (``license``, ``base_model``, ``datasets``, ``language``, ``library_name``,
``pipeline_tag``, ``tags``, ``model-index``) is built by ``huggingface_hub.ModelCardData`` so the Hub
reads it; the text comes from the Jinja templates in ``model_cards/`` (installed as the package
``hftl.model_cards``), one per pipeline tag, all extending ``base.md.j2``.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hftl.families import family_for_type
from hftl.guards import GUARDS
from hftl.shapes import SHAPES
from hftl.strategies import STRATEGIES
from hftl.tasks import TASKS

logger = logging.getLogger(__name__)

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"
SCATTER_PNG = "predicted_vs_true.png"
IMAGES = ("confusion_matrix", "predicted_vs_true", "training_curves")
REQUIRED = ("run_info.json", "eval_report.json")


class CardError(ValueError):
    """The output directory lacks what a card is made from."""


def load_run(output_dir: str | Path) -> dict:
    """The files of a finished run that a card is made from, checked."""
    output = Path(output_dir)
    if not output.is_dir():
        raise CardError(
            f"{output}: no such directory; pass the --output_dir of a finished hftl run"
        )
    missing = [name for name in REQUIRED if not (output / name).exists()]
    if missing:
        raise CardError(
            f"{output}: missing {', '.join(missing)}; is this the output of a finished hftl run? "
            "(hftl writes them at the end of training)"
        )
    info, report = (json.loads((output / name).read_text()) for name in REQUIRED)
    state = output / "trainer_state.json"
    history = json.loads(state.read_text()).get("log_history", []) if state.exists() else []
    return run_record(output, info, report, history)


def run_record(output_dir: str | Path, info: dict, report: dict, log_history: list) -> dict:
    """What a card is made from: the run's facts, its evaluation report, its log history and
    whether ``output_dir`` holds a LoRA adapter (and for which base model)."""
    run = {"run_info": info, "eval_report": report, "log_history": log_history}
    adapter = Path(output_dir) / "adapter_config.json"
    run["adapter"] = adapter.exists()
    if run["adapter"]:
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        run["adapter_base"] = info["base_model"].get("hub_id") or base
    return run


def card_data(run: dict, model_name: str, license: str | None = None) -> ModelCardData:
    info, report = run["run_info"], run["eval_report"]
    task = info["task"]
    data = info["data"]
    dataset_name = data["hub_id"] or _dataset_label(data)
    common = {
        "task_type": task,
        "task_name": task.replace("-", " ").capitalize(),
        "dataset_type": data["hub_id"] or dataset_name,
        "dataset_name": dataset_name,
        "dataset_config": data.get("config"),
        "dataset_split": data["eval_split"] if len(data["eval_split"]) < 40 else "validation",
    }
    results = [
        EvalResult(metric_type=kind, metric_value=round(value, 4), metric_name=name, **common)
        for kind, name, value in shape_of(info).card_metrics(report)
    ]
    tags = ["hftl", "transfer-learning", f"strategy-{info['training']['strategy']}", task]
    if task in TASKS:
        tags += TASKS.get(task).card_tags
    tags += family_for_type(info.get("model_type")).card_tags
    if info.get("custom_code"):
        tags.append("custom_code")  # the Hub's tag for a model that loads with its own code
    if info["base_model"].get("from_scratch"):
        tags.append("from-scratch")
    return ModelCardData(
        language=data.get("language"),
        license=license or info["base_model"].get("license"),
        library_name="peft" if run["adapter"] else "transformers",
        pipeline_tag=task,
        tags=tags,
        datasets=[data["hub_id"]] if data["hub_id"] else None,
        base_model=None if info["base_model"].get("from_scratch") else info["base_model"]["hub_id"],
        model_name=model_name,
        eval_results=results,
    )


def shape_of(info: dict):
    """The label shape of a run (runs from before label shapes: single-label)."""
    return SHAPES.get((info.get("label_shape") or {}).get("shape", "single_label"))


def strategy_sentence(info: dict) -> str:
    """What the strategy (and the guards) did, in sentences a reader of the card understands;
    each registered strategy and guard words its own."""

    t = info["training"]
    llrd = ""
    if t["layer_decay"] < 1:
        llrd = (
            f" Layer-wise learning-rate decay {t['layer_decay']}: the top block trained at "
            f"{t['layer_decay']}x the base rate and each layer below it at {t['layer_decay']}x the "
            "rate of the layer above"
        )
    head = (
        f"; the new head got {t['head_lr_multiplier']}x the base rate"
        if t["head_lr_multiplier"] != 1
        else ""
    )
    llrd = (
        f"{llrd}{head}."
        if llrd
        else (f" The new head got {t['head_lr_multiplier']}x the base rate." if head else "")
    )
    if info["base_model"].get("from_scratch"):
        return (
            "Trained from scratch: the architecture only, with random initial weights (no transfer)."
            + llrd
        )
    if t["strategy"] not in STRATEGIES:
        return f"Strategy `{t['strategy']}`."
    sentences = [STRATEGIES.get(t["strategy"]).describe(t, llrd)]
    for name in t.get("guards", []):
        if name in GUARDS:
            sentences.append(GUARDS.get(name).describe(t))
    reference = info.get("reference")
    if reference:
        metric = reference.get("metric", "accuracy")  # runs from before label shapes: accuracy
        shape = SHAPES.get(reference.get("shape", "single_label"))
        lost = (
            f"{reference['forgetting']:+.4f} worse"  # an error in the data's units
            if metric in shape.lower_is_better
            else f"{reference['forgetting'] * 100:+.1f} points lost"
        )
        sentences.append(
            f"Forgetting, measured on the reference task ({reference['model']}, "
            f"{reference['validation_rows']} validation rows, its own head on the trained "
            f"backbone): {metric} {reference[f'{metric}_before']:.4f} before training, "
            f"{reference[f'{metric}_after']:.4f} after ({lost})."
        )
    return " ".join(s for s in sentences if s)


def render_card(output_dir: str | Path, repo_id: str | None = None, *, license: str | None = None,
                images: dict | None = None, run: dict | None = None) -> str:  # fmt: skip
    """The card of the run in ``output_dir`` as a string (``README.md`` content); ``run`` is
    :func:`load_run`'s result when the caller has it already."""
    output = Path(output_dir)
    run = run or load_run(output)
    info = run["run_info"]
    model_name = (repo_id or output.resolve().name).split("/")[-1]
    repo_id = repo_id or f"<your-namespace>/{model_name}"
    data = card_data(run, model_name, license)
    base = info["base_model"]
    dataset = info["data"]["hub_id"] or f"`{_dataset_label(info['data'])}`"
    if base.get("from_scratch"):
        description = (
            f"the {info['model_type']} architecture trained from random weights on {dataset}."
        )
    else:
        base_name = f"[{base['hub_id']}](https://huggingface.co/{base['hub_id']})" if base["hub_id"] else f"`{_display_name(base['name_or_path'])}`"  # fmt: skip
        description = f"{base_name} fine-tuned with hftl on {dataset}."
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("hftl.model_cards"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    templates.filters["basename"] = _display_name
    if info["task"] not in TASKS:
        raise CardError(
            f"{output}: run_info.json names task {info['task']!r}; {TASKS.unknown(info['task'])}"
        )
    task = TASKS.get(info["task"])
    shape = shape_of(info)
    try:
        template = templates.get_template(task.card_template)
    except jinja2.TemplateNotFound as error:
        raise CardError(
            f"no model card template {task.card_template} for task {task.name!r} in hftl/model_cards"
        ) from error
    text = template.render(
        card_data=data.to_yaml(),
        model_name=model_name,
        repo_id=repo_id,
        info=info,
        report=run["eval_report"],
        description=description,
        strategy_sentence=strategy_sentence(info),
        base_link=f"https://huggingface.co/{base['hub_id']}" if base.get("hub_id") else None,
        images={**dict.fromkeys(IMAGES), **(images or {})},
        shape=shape.name,
        main_metric=shape.default_metric,
        labels_title=shape.labels_title,
        family=family_for_type(info.get("model_type")).card_context(info),
        data_label=_dataset_label(info["data"]),
        adapter=run["adapter"],
        adapter_base=run.get("adapter_base"),
        example_input=task.example_input,
        processor_class=task.processor_class,
        onnx_imports=task.onnx_snippet[0],
        onnx_example=task.onnx_snippet[1],
    )
    ModelCard(text)  # parses the YAML header: a broken template fails here, not on the Hub
    return text


def write_card(
    output_dir: str | Path,
    repo_id: str | None = None,
    *,
    license: str | None = None,
    run: dict | None = None,
) -> Path:
    """Write ``README.md`` and its images (confusion matrix or predicted-vs-true plot, training
    curves) into ``output_dir``;
    ``run`` is :func:`run_record`'s result when the caller has it (else the files are read)."""
    output = Path(output_dir)
    run = run or load_run(output)
    images = {
        "confusion_matrix": _plot_confusion(run, output / CONFUSION_PNG),
        "predicted_vs_true": _plot_scatter(run, output / SCATTER_PNG),
        "training_curves": _plot_curves(run, output / CURVES_PNG),
    }
    text = render_card(output, repo_id, license=license, images=images, run=run)
    path = output / "README.md"
    path.write_text(text)
    logger.info("model card written to %s", path)
    return path


def _dataset_label(data: dict) -> str:
    """hftl:rotten-tomatoes/train.csv -> rotten-tomatoes; a local file -> its name."""
    value = str(data.get("name_or_path"))
    if value.startswith("hftl:"):
        return value.removeprefix("hftl:").split("/")[0]
    return _display_name(value)


def _display_name(value) -> str:
    """A local path shows as its last part (a card should not publish someone's directories)."""
    text = str(value)
    if text.startswith("hftl:"):
        return text
    return (
        Path(text).name if ("/" in text and Path(text).exists()) or text.startswith("/") else text
    )


def agg_figure(width: float, height: float):
    """A matplotlib figure drawn by the Agg canvas directly: no pyplot, no global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _plot_confusion(run: dict, path: Path) -> str | None:
    report = run["eval_report"]
    matrix = report.get("confusion_matrix")
    if not matrix:
        return None
    labels = run["run_info"]["labels"]
    size = max(3.5, 0.45 * len(labels) + 2)
    fig = agg_figure(size, size)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(f"accuracy {report['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def _plot_scatter(run: dict, path: Path) -> str | None:
    points = run["eval_report"].get("predicted_vs_true")
    if not points:
        path.unlink(missing_ok=True)
        return None
    fig = agg_figure(4.5, 4.5)
    ax = fig.subplots()
    true, predicted = points["true"], points["predicted"]
    ax.scatter(true, predicted, s=8, alpha=0.5)
    low, high = min(min(true), min(predicted)), max(max(true), max(predicted))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel(f"true {points['target']}")
    ax.set_ylabel("predicted")
    ax.set_title(f"RMSE {run['eval_report']['rmse']:.3f}, R² {run['eval_report']['r2']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def _plot_curves(run: dict, path: Path) -> str | None:
    history = run["log_history"]
    metric = shape_of(run["run_info"]).default_metric
    train = [(e["step"], e["loss"]) for e in history if "loss" in e and "step" in e]
    evals = [
        (e["step"], e[f"eval_{metric}"]) for e in history if f"eval_{metric}" in e and "step" in e
    ]
    if not train and not evals:
        path.unlink(missing_ok=True)
        return None
    fig = agg_figure(6, 3.5)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss", color="tab:blue")
        ax.set_ylabel("training loss")
    ax.set_xlabel("step")
    if evals:
        other = ax.twinx()
        other.plot(
            *zip(*evals, strict=True), "o-", label=f"validation {metric}", color="tab:orange"
        )
        other.set_ylabel(f"validation {metric}")
        if metric not in shape_of(run["run_info"]).lower_is_better:
            other.set_ylim(0, 1)
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name
