"""Where arms run: in this process (``local``) or as Ray tasks (``ray``), behind one interface.

Either way the driver alone marks an arm finished: an executor yields one :class:`ArmResult`
per arm as it finishes, and the driver records it. A Ray worker trains into a temporary folder
and sends small files (the adapter) back as bytes; large weights (a full fine-tuning's
safetensors) it writes itself to a staging folder under the run directory or
``sweep.shared_path``, and the driver moves them into the arm's folder. A worker that cannot
reach that folder sends them as bytes too.

On GPUs a Ray worker exits after its arm (``max_calls=1``): a worker kept alive would keep the
base model in GPU memory that Ray counts as free. Threads per worker follow its CPUs, and a GPU
request is checked against the largest node, not the cluster's total.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rankscope.config import RankscopeConfig
from rankscope.errors import RankscopeError
from rankscope.sweep.arm import ArmOutput, ArmRunner
from rankscope.sweep.context import SweepContext
from rankscope.runstore.arms import ArmPlan
from rankscope.runstore.writer import RunWriter

log = logging.getLogger(__name__)


@dataclass
class ArmResult:
    arm: ArmPlan
    output: ArmOutput | None = None
    error: str | None = None  # one line; set when the arm failed
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content (remote arms)
    staged: dict[str, str] = field(default_factory=dict)  # relative path -> file a worker wrote (remote arms)
    worker_pid: int | None = None  # the process that ran the arm (remote arms)


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
            # a selected candidate keeps its folder: its weights and validation scores are in it
            arm_dir = self.store.arm_dir(arm.arm_id) if arm.stage == "selected" else self.store.start_arm(arm)
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


LARGE_FILES = ("model.safetensors",)  # written by the worker to the staging folder, not sent as bytes


def _files_under(folder: Path, staging: str | None) -> tuple[dict[str, bytes], dict[str, str]]:
    """Small files as bytes; large ones moved to ``staging`` when the worker can write there."""
    files: dict[str, bytes] = {}
    staged: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = str(path.relative_to(folder))
        if staging and relative in LARGE_FILES:
            try:
                target = Path(staging) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(target))
                staged[relative] = str(target)
                continue
            except OSError as error:  # not reachable from this node: send the bytes after all
                log.warning("cannot stage %s at %s (%s); sending it through the object store", relative, staging, error)
        files[relative] = path.read_bytes()
    return files, staged


def release_worker_memory() -> None:
    """Drop the cached base model and hand freed GPU memory back to the driver (the worker also exits)."""
    _WORKER_STATE.clear()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_arm_in_worker(config_json: dict, arm_json: dict, threads: int | None, staging: str | None = None,
                      release: bool = False, weights_dir: str | None = None) -> ArmResult:
    """Body of a Ray task. A CPU worker keeps its base model and base analysis between arms of the
    same sweep; a GPU worker (``release``) drops them when its arm ends and then exits.
    ``threads`` = the task's CPUs (torch otherwise sizes its pool to the whole node).
    ``weights_dir``: a selected candidate's folder in the run directory; a worker that cannot read
    it trains the arm again with the same seed and rate."""
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
            output = runner.run(arm, Path(tmp), Path(weights_dir) if weights_dir else None)
            files, staged = _files_under(Path(tmp), staging)
            return ArmResult(arm=arm, output=output, files=files, staged=staged, worker_pid=os.getpid())
    except Exception as error:
        return ArmResult(arm=arm, error=describe_failure(error), worker_pid=os.getpid())
    finally:
        del runner
        if release:
            release_worker_memory()


class RayExecutor:
    """One Ray task per arm with the config's resources; a local Ray when no address is given."""

    def __init__(self, config: RankscopeConfig, run_dir: Path | None = None):
        self.config = config
        self.run_dir = run_dir

    def staging_dir(self, arm: ArmPlan) -> str | None:
        """Where a worker writes the arm's large files: sweep.shared_path, else the run directory."""
        if self.config.sweep.shared_path:
            return str(Path(self.config.sweep.shared_path).resolve() / self.config.name / arm.arm_id)
        if self.run_dir is None:
            return None
        return str(Path(self.run_dir).resolve() / ".staging" / arm.arm_id)

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
        """A request that no single node can satisfy would wait forever: refuse it up front.

        A task runs on one node, so the cluster's total (two 1-GPU nodes = 2 GPUs) is not
        what a 2-GPU arm can get; the largest node is."""
        total = ray.cluster_resources()
        spec = self.config.sweep
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)] or [total]
        most_gpus = max(n.get("GPU", 0) for n in nodes)
        for method, key in (("lora", "sweep.gpus_per_arm"), ("sft", "sweep.sft_gpus" if spec.sft_gpus is not None
                                                             else "sweep.gpus_per_arm")):
            wanted = self._gpus(method, total)
            if not any(n.get("GPU", 0) >= wanted and n.get("CPU", 0) >= spec.cpus_per_arm for n in nodes):
                if wanted > most_gpus:
                    raise RankscopeError(key, f"no node of the Ray cluster has {wanted:g} GPU(s) (the largest has "
                                         f"{most_gpus:g}, the cluster {total.get('GPU', 0):g} in all)",
                                         "ask at most one node's GPUs, or set sweep.gpus_per_arm=0 to run on CPUs")
                raise RankscopeError("sweep.cpus_per_arm", f"no node has {spec.cpus_per_arm:g} CPU(s) "
                                     f"(the largest has {max(n.get('CPU', 0) for n in nodes):g})",
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

        spec = self.config.sweep
        total = ray.cluster_resources()
        cached = ray.remote(run_arm_in_worker)
        # max_calls cannot be set through .options(): a GPU task needs its own remote function.
        exiting = ray.remote(max_calls=1)(run_arm_in_worker)
        threads = max(1, int(spec.cpus_per_arm))
        config_json = self.config.model_dump(mode="json")
        pending = {}
        for arm in arms:
            gpus = self._gpus(arm.method, total)
            task = exiting if gpus > 0 else cached
            weights = str(Path(self.run_dir).resolve() / "arms" / arm.arm_id) \
                if arm.stage == "selected" and self.run_dir is not None else None
            ref = task.options(num_cpus=spec.cpus_per_arm, num_gpus=gpus, max_retries=0).remote(
                config_json, arm.to_json(), threads, self.staging_dir(arm), gpus > 0, weights)
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
        return RayExecutor(config, store.root)
    return LocalExecutor(context, store)
