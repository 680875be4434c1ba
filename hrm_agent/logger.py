"""The one logger of a run: stable-baselines3's, writing ``progress.csv`` and TensorBoard events in the run
directory (the HRM agent's and the baselines' alike), and the hyperparameters it shows in TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_agent.checkpoint import OutputError

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent


def log_hparams(logger: Any, hparams: dict[str, Any]) -> None:
    """Record a run's hyperparameters once, for TensorBoard's HPARAMS tab (beside its success rates)."""
    from stable_baselines3.common.logger import HParam

    metrics = {"eval/success_rate": 0.0, "rollout/success_rate": 0.0}
    logger.record("hparams", HParam(hparams, metrics), exclude=("stdout", "log", "json", "csv"))


def agent_hparams(agent: "HRMAgent") -> dict[str, Any]:
    """The HRM agent's env, seed, agent and model fields, flat (scalars as they are, others as text)."""
    hparams: dict[str, Any] = {"env": agent.env_id, "seed": agent.seed}
    for key, value in {**agent.config.model_dump(exclude={"model"}), **agent.model_config.model_dump()}.items():
        hparams[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return hparams


def make_logger(run_dir: Path, resume_step: int | None = None) -> Any:
    """stable-baselines3 logger writing ``progress.csv`` and TensorBoard events in ``run_dir``.

    A resumed run (``resume_step``: the step of its checkpoint) first drops what was logged past that
    step (:func:`hrm_agent.runs.truncate_logs`), then appends to its ``progress.csv`` (SB3's own CSV
    writer would truncate it) and writes a new events file that tells a TensorBoard already showing
    the run to purge its steps past ``resume_step``. A write the file system refuses raises
    ``OutputError`` naming the file.
    """
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
    from torch.utils.tensorboard import SummaryWriter

    from hrm_agent.runs import PROGRESS_CSV, truncate_logs

    class AppendingCSVOutputFormat(CSVOutputFormat):
        def __init__(self, filename: str) -> None:
            self.path = Path(filename)
            try:
                if not self.path.is_file() or self.path.stat().st_size == 0:
                    super().__init__(filename)
                    return
                self.file = self.path.open("r+")
            except OSError as err:
                raise OutputError(self.path, err) from err
            self.keys = self.file.readline().rstrip("\n").split(",")
            self.file.seek(0, 2)  # append after the rows already logged
            self.separator, self.quotechar = ",", '"'

        def write(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().write(*args, **kwargs)
            except OSError as err:
                raise OutputError(self.path, err) from err

    class PurgingTensorBoardOutputFormat(TensorBoardOutputFormat):
        def __init__(self, folder: str, purge_step: int | None) -> None:
            try:
                self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
            except OSError as err:
                raise OutputError(folder, err) from err
            self._is_closed = False
            event_writer = getattr(self.writer.file_writer, "event_writer", None)
            self.path = getattr(event_writer, "_file_name", folder)  # the events file, where tensorboard says

        def write(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().write(*args, **kwargs)
            except OSError as err:
                raise OutputError(self.path, err) from err

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(run_dir, err) from err
    if resume_step is not None:
        truncate_logs(run_dir, resume_step)
    formats = [AppendingCSVOutputFormat(str(run_dir / PROGRESS_CSV)),
               PurgingTensorBoardOutputFormat(str(run_dir), None if resume_step is None else resume_step + 1)]
    return Logger(str(run_dir), formats)
