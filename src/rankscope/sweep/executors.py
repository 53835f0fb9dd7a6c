"""Where arms run: in this process (``local``) or as Ray tasks (``ray``), behind one interface.

Either way the driver alone writes the store: an executor yields one :class:`ArmResult` per
arm as it finishes, and the driver records it. A Ray worker trains into a temporary folder and
sends the arm's files (adapter or weights) back as bytes, so workers need no shared filesystem.
"""

from __future__ import annotations

import logging
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rankscope.config import RankscopeConfig
from rankscope.errors import RankscopeError
from rankscope.sweep.arm import ArmOutput, ArmRunner
from rankscope.sweep.context import SweepContext
from rankscope.sweep.plan import ArmPlan
from rankscope.sweep.store import RunWriter

log = logging.getLogger(__name__)


@dataclass
class ArmResult:
    arm: ArmPlan
    output: ArmOutput | None = None
    error: str | None = None  # one line; set when the arm failed
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content (remote arms)


def describe_failure(error: BaseException) -> str:
    """One line a user can act on."""
    from rankscope.train.loop import TrainingDiverged

    text = str(error)
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return "out of memory; lower train.batch_size or train.max_length, or use a smaller rank"
    if isinstance(error, (RankscopeError, TrainingDiverged)):
        return text
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first}"[:500]


class LocalExecutor:
    """Arms one after another in this process, sharing the base model, data and base analysis."""

    def __init__(self, context: SweepContext, store: RunWriter):
        self.context = context
        self.store = store
        self.runner = ArmRunner(context, store.root)

    def run(self, arms: list[ArmPlan]) -> Iterator[ArmResult]:
        for arm in arms:
            arm_dir = self.store.start_arm(arm)
            try:
                yield ArmResult(arm=arm, output=self.runner.run(arm, arm_dir))
            except KeyboardInterrupt:
                raise
            except Exception as error:  # the arm fails, the sweep goes on
                log.debug("arm %s failed:\n%s", arm.arm_id, traceback.format_exc())
                yield ArmResult(arm=arm, error=describe_failure(error))


# ---------------------------------------------------------------------------------------------
# Ray

_WORKER_STATE: dict[str, ArmRunner] = {}


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_arm_in_worker(config_json: dict, arm_json: dict, threads: int | None) -> ArmResult:
    """Body of a Ray task. A worker process keeps its base model and base analysis between arms
    of the same sweep. ``threads`` pins torch's thread count to the driver's, so CPU results
    match the local executor bit for bit on the same machine."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    config = RankscopeConfig.model_validate(config_json)
    arm = ArmPlan(**arm_json)
    key = config.model_dump_json()
    runner = _WORKER_STATE.get(key)
    if runner is None:
        _WORKER_STATE.clear()  # one sweep's base model at a time per worker
        runner = _WORKER_STATE[key] = ArmRunner(SweepContext(config))
    try:
        with tempfile.TemporaryDirectory(prefix="rankscope-arm-") as tmp:
            output = runner.run(arm, Path(tmp))
            return ArmResult(arm=arm, output=output, files=_files_under(Path(tmp)))
    except Exception as error:
        return ArmResult(arm=arm, error=describe_failure(error))


class RayExecutor:
    """One Ray task per arm with the config's resources; a local Ray when no address is given."""

    def __init__(self, config: RankscopeConfig):
        self.config = config

    def _init(self):
        try:
            import ray
        except ImportError:
            raise RankscopeError("sweep.executor=ray", "Ray is not installed",
                                 "pip install 'rankscope[ray]' or use --executor local") from None
        if not ray.is_initialized():
            spec = self.config.sweep
            ray.init(address=spec.address, ignore_reinit_error=True, include_dashboard=False,
                     log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                               "TRANSFORMERS_VERBOSITY": "error"}})
        return ray

    def _check_resources(self, ray) -> None:
        """A GPU request that no node can satisfy would wait forever: refuse it up front."""
        total = ray.cluster_resources()
        spec = self.config.sweep
        wanted_gpus = max(self._gpus("lora", total), self._gpus("sft", total))
        if wanted_gpus > total.get("GPU", 0):
            raise RankscopeError("sweep.gpus_per_arm", f"the Ray cluster has {total.get('GPU', 0):g} GPU(s) but an "
                                 f"arm asks for {wanted_gpus:g}", "set sweep.gpus_per_arm=0 to run on CPUs")
        if spec.cpus_per_arm > total.get("CPU", 0):
            raise RankscopeError("sweep.cpus_per_arm", f"the Ray cluster has {total.get('CPU', 0):g} CPU(s)",
                                 "lower sweep.cpus_per_arm")

    def _gpus(self, method: str, total: dict) -> float:
        """``auto``: one GPU per arm when the cluster has any, else run on CPUs."""
        spec = self.config.sweep
        if method == "sft" and spec.sft_gpus is not None:
            return spec.sft_gpus
        if spec.gpus_per_arm == "auto":
            return 1.0 if total.get("GPU", 0) >= 1 else 0.0
        return float(spec.gpus_per_arm)

    def run(self, arms: list[ArmPlan]) -> Iterator[ArmResult]:
        ray = self._init()
        self._check_resources(ray)
        import torch

        spec = self.config.sweep
        total = ray.cluster_resources()
        task = ray.remote(run_arm_in_worker)
        threads = torch.get_num_threads()
        config_json = self.config.model_dump(mode="json")
        pending = {}
        for arm in arms:
            gpus = self._gpus(arm.method, total)
            ref = task.options(num_cpus=spec.cpus_per_arm, num_gpus=gpus, max_retries=0).remote(
                config_json, arm.to_json(), threads)
            pending[ref] = arm
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                arm = pending.pop(ready[0])
                try:
                    yield ray.get(ready[0])
                except Exception as error:  # the worker died (segfault, OOM kill): this arm only
                    yield ArmResult(arm=arm, error=describe_failure(error))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def make_executor(config: RankscopeConfig, context: SweepContext, store: RunWriter):
    if config.sweep.executor == "ray":
        return RayExecutor(config)
    return LocalExecutor(context, store)
