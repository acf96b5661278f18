"""The files of a run's output directory that hftl's rules read (one home for their names)."""

FINISHED_RUN = "run_info.json"  # written last by a finished run (:func:`hftl.outputs.finish_run`)
RUN_STARTED = "run_config.yaml"  # written when a run starts (:func:`hftl.outputs.start_run`)
MODEL_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
