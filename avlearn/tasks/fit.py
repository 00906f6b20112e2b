"""``avlearn fit -c RECIPE.yaml``: training through LightningCLI.

LightningCLI parses the recipe (one YAML file naming the task, the data module and the trainer), saves the
resolved config beside the logs, and runs ``Trainer.fit``. Before anything is written, :func:`fit_main`
checks what a user can get wrong (manifests, ``--ckpt_path``, a resumed run longer than its schedule) and
reports it as one line, exit status 1. ``--ckpt_path last`` resumes the newest intact ``last.ckpt`` of any
earlier run of the recipe (see :mod:`avlearn.tasks.checkpoints`: it is written at each epoch end and every
few minutes), or says in one line (exit 0, nothing written) that the run already finished. The resumed run
logs into a new ``version_N`` folder whose ``config.yaml`` names the checkpoint it continued
(``ckpt_path``), and whose ``metrics.csv`` starts at the saved step. The weights inference loads are written
by :class:`avlearn.tasks.export.ExportWeights`, a callback of the recipes.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L

from avlearn.data.manifest import ManifestError, read_manifest
from avlearn.io.errors import MediaError
from avlearn.models.weights import CheckpointError, read_weights_info
from avlearn.tasks.checkpoints import (
    AtomicCheckpointIO,
    FitError,
    NothingToResume,
    check_checkpoint,
    check_schedule,
    check_unfinished,
    logged_runs_folder,
    newest_intact_checkpoint,
)

__all__ = ["FitError", "check_manifests", "fit_main"]


def check_manifests(data_args: Any) -> None:
    """Reads every ``*manifest`` argument of the data module before training prints or writes anything: a
    missing, unreadable or empty manifest, or one listing a missing media file, is one line instead of a
    traceback from the middle of ``setup``.

    Args:
        data_args: the data module's ``init_args`` (a mapping).

    Raises:
        ManifestError, FitError.
    """
    for key, value in dict(data_args or {}).items():
        if not key.endswith("manifest") or not isinstance(value, (str, Path)):
            continue
        rows = read_manifest(value)
        if not rows:
            raise FitError(f"{value}: the manifest has no rows; point --data.init_args.{key} at one that lists clips")
        missing = next((row["path"] for row in rows if not Path(row["path"]).is_file()), None)
        if missing is not None:
            raise FitError(f"{value}: lists {missing}, which does not exist; fix that row or render the data again")


def check_init_from(model_args: Any, task_name: str | None = None) -> None:
    """A task's ``init_from`` (weights to start from) names an exported checkpoint of the model the run
    trains, or a checkpoint with components (the sync encoders another task's model starts from); checked
    before anything is built, so a wrong one is one line (inside the task's constructor the error would reach
    the user wrapped in the argument parser's)."""
    args = dict(model_args or {})
    path = args.get("init_from")
    if not path:
        return
    doc = read_weights_info(path)
    same_task = doc.get("task") == task_name
    if args.get("model") and doc.get("model") != args["model"] and (same_task or not doc.get("components")):
        why = "" if same_task else " without encoder components"
        raise FitError(f"{path}: a {doc.get('model')} checkpoint{why}; this run trains {args['model']}")


def _task_name(model: Any) -> str | None:
    """``task_name`` of the configured task class (``sync``, ``separation``...), None when it cannot be read."""
    path = model.get("class_path") if hasattr(model, "get") else None
    if not path or "." not in str(path):
        return None
    module, name = str(path).rsplit(".", 1)
    try:
        return getattr(getattr(importlib.import_module(module), name), "task_name", None)
    except (ImportError, AttributeError):
        return None


def _cli_class():
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class FitCLI(LightningCLI):
        """LightningCLI with avlearn's checks and ``--ckpt_path last`` across runs."""

        def parse_arguments(self, parser, args) -> None:
            # LightningCLI warns whenever args are given while sys.argv has any (as under `avlearn fit`)
            self.config = parser.parse_args(args)
            config = self.config[self.config.subcommand]
            data = config.get("data")
            check_manifests(data.get("init_args") if data is not None and "init_args" in data else data)
            model = config.get("model")
            check_init_from(
                model.get("init_args") if model is not None and "init_args" in model else model, _task_name(model)
            )
            ckpt_path = config.get("ckpt_path")
            if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
                ckpt = check_checkpoint(ckpt_path)  # before LightningCLI itself unpickles it for hyperparameters
                self._checked = (ckpt_path, ckpt)  # before_fit takes it from here instead of reading it again
                trainer = config.get("trainer") or {}
                max_steps = trainer.get("max_steps", -1)
                max_epochs = trainer.get("max_epochs")  # None: as Trainer, 1000 unless max_steps is set
                max_epochs = (1000 if max_steps == -1 else -1) if max_epochs is None else max_epochs
                check_schedule(ckpt_path, ckpt, max_epochs, max_steps)

        def before_fit(self) -> None:
            trainer = self.trainer
            ckpt_path = self.config.fit.get("ckpt_path")
            say = print if trainer.is_global_zero else (lambda *a, **k: None)
            ckpt = None
            if ckpt_path == "last":
                warn = lambda line: say(f"avlearn fit: warning: {line}", file=sys.stderr)  # noqa: E731
                found = newest_intact_checkpoint(trainer, warn)  # a damaged newer one: skipped, with a warning
                if found is None:
                    say(
                        f"avlearn fit: warning: {logged_runs_folder(trainer)}: no last.ckpt of an earlier run "
                        "to resume; starting from scratch",
                        file=sys.stderr,
                    )
                ckpt_path, ckpt = (None, None) if found is None else (str(found[0]), found[1])
            if ckpt_path and ckpt_path not in ("best", "hpc", "registry"):
                if ckpt is None:  # an explicit path: parse_arguments has read it already
                    checked_path, checked = getattr(self, "_checked", (None, None))
                    ckpt = checked if checked_path == ckpt_path else check_checkpoint(ckpt_path)
                check_unfinished(ckpt_path, ckpt, trainer.max_epochs, trainer.max_steps)  # before anything is written
                check_schedule(ckpt_path, ckpt, trainer.max_epochs, trainer.max_steps)
                say(
                    f"avlearn fit: resuming {ckpt_path} (epoch {ckpt['epoch']}, step {ckpt['global_step']})",
                    file=sys.stderr,
                )
            # the saved config.yaml records which checkpoint this run continued
            self.config.fit.ckpt_path = self.config_init.fit.ckpt_path = ckpt_path
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    return FitCLI


def fit_main(argv: list[str]) -> int:
    """Runs ``LightningCLI`` in fit mode with the recipe's task and data module; a user error (bad manifest,
    media, checkpoint or resume request) is one line on stderr and exit status 1."""
    warnings.filterwarnings(  # Lightning's own use of a torch API torch 2.14 deprecates: nothing a user can do
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", module="lightning"
    )
    try:
        _cli_class()(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=["fit", *argv],
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
        )
    except (FitError, ManifestError, MediaError, CheckpointError) as err:
        print(f"avlearn fit: error: {err}", file=sys.stderr)
        return 1
    except NothingToResume as done:  # exit 0: rerunning a finished job (a requeued batch job) is no error
        print(f"avlearn fit: {done}", file=sys.stderr)
    return 0
