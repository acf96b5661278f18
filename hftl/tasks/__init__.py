"""Tasks, one module each, behind a validated registry.

    from hftl.tasks import TASKS
    task = TASKS.get("text-classification")
    task.auto_model, task.load_processor(path), task.prepare(raw, processor, columns, ...)

A new task is one module here (a :class:`~hftl.tasks.base.Task` subclass), registered below, plus
a recipe, a YAML config, an asset entry and tests.
"""

from hftl.registry import Registry
from hftl.tasks.audio import AudioClassification
from hftl.tasks.base import Prepared, Task, file_value
from hftl.tasks.image_classification import ImageClassification
from hftl.tasks.text_classification import TextClassification

TASKS: Registry[Task] = Registry("task")
for _task in (ImageClassification(), TextClassification(), AudioClassification()):
    TASKS.register(_task)


def task_of(task: "Task | str") -> Task:
    """A task object from itself or its registered name."""
    return task if isinstance(task, Task) else TASKS.get(task)


def task_for_model_type(model_type: str | None) -> Task | None:
    """The first registered task whose ``AutoModelFor...`` class builds ``model_type``."""
    return next((task for task in TASKS if task.builds(model_type)), None)


def task_for_config(config) -> Task | None:
    """The task of a saved classifier's config: the one whose ``AutoModelFor...`` class names
    its architecture (``config.architectures``), else the only one that builds its type."""
    architectures = set(getattr(config, "architectures", None) or ())
    builders = [task for task in TASKS if task.builds(config.model_type)]
    named = [t for t in builders if architectures & set(t.model_types.values())]
    if len(named) == 1:
        return named[0]
    return builders[0] if len(builders) == 1 else None


__all__ = [
    "TASKS",
    "Prepared",
    "Task",
    "file_value",
    "task_for_config",
    "task_for_model_type",
    "task_of",
]
