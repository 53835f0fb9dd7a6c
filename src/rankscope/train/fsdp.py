"""Full fine-tuning sharded over N processes with PyTorch FSDP2 (``fully_shard``), one per GPU.

Why: an 8B model's full fine-tuning needs ~16 bytes per parameter (fp32 master weights,
gradients, two AdamW moments), more than one 80 GB GPU holds. FSDP (Zhao et al., 2023, "PyTorch
FSDP"; ZeRO-3 in Rajbhandari et al., 2020) keeps 1/N of each on every rank and all-gathers a
layer's weights just before it runs. Each rank trains on its slice of every batch with the same
loop as every other arm (rankscope.train.loop, ``shard=``): the summed, world-scaled losses make
the averaged gradients equal the single-process batch gradient, so the arm learns what an
unsharded run learns. The precision recipe is the same autocast one (FSDP's own mixed-precision
policy would keep norm weights in bf16, which the single-device arms do not).

Launched with torchrun (``python -m torch.distributed.run``) from the process that runs the arm;
rank 0 gathers the full fp32 state dict and writes it as safetensors with ``train.json``. On CPU
(tests) the backend is gloo, on GPUs NCCL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rankscope.config import ModelSpec, TrainSpec
from rankscope.models.weights import unique_names
from rankscope.train.loss import EncodedExample

WEIGHTS_FILE = "model.safetensors"
RESULT_FILE = "train.json"


@dataclass
class ShardedJob:
    """Everything a rank needs, written as JSON for torchrun's processes."""

    model: dict  # ModelSpec
    train: dict  # TrainSpec
    lr: float
    seed: int
    pad_token_id: int
    precision: str  # fp32 | bf16-mixed
    gradient_checkpointing: bool
    encoded: list[tuple[list[int], list[int]]]  # (input_ids, labels) per training row
    out_dir: str


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks to shard one by one (each all-gathered just before it runs)."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            return list(module)
    return []


def shard_model(model: torch.nn.Module, mesh) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def run_rank(job: ShardedJob) -> None:
    """Body of one torchrun process."""
    import torch.distributed as dist
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh

    from rankscope.models.load import load_base_model
    from rankscope.train.loop import DataShard, train_model
    from rankscope.train.precision import BF16_MIXED, FP32

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    try:
        # Loaded on the host in fp32 (the master weights); fully_shard moves each rank's shard to its device.
        spec = ModelSpec(**{**job.model, "dtype": "float32", "device": "cpu"})
        model = load_base_model(spec).model
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        keep = unique_names(model)  # decided before sharding: gathered tensors no longer share storage
        mesh = init_device_mesh("cuda" if cuda else "cpu", (world,))
        shard_model(model, mesh)
        encoded = [EncodedExample(input_ids=list(ids), labels=list(labels)) for ids, labels in job.encoded]
        result = train_model(model, encoded, TrainSpec(**job.train), lr=job.lr, seed=job.seed,
                             pad_token_id=job.pad_token_id, description=f"sft rank {rank}",
                             precision=BF16_MIXED if job.precision == "bf16-mixed" else FP32,
                             gradient_checkpointing=job.gradient_checkpointing,
                             shard=DataShard(rank=rank, world=world, device=device))
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            out = Path(job.out_dir)
            tensors = {name: state[name].contiguous() for name in keep}
            save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
            record = {**result.to_json(), "sharded": {"world_size": world, "engine": "fsdp2 fully_shard"},
                      "trainable_params": sum(t.numel() for t in tensors.values())}
            (out / RESULT_FILE).write_text(json.dumps(record))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch_sharded(job: ShardedJob, nproc: int, timeout_s: float | None = None) -> dict:
    """Run ``job`` on ``nproc`` local processes with torchrun; returns rank 0's train.json.

    The weights are left in ``job.out_dir`` (model.safetensors)."""
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(asdict(job), handle)
        job_path = handle.name
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    source = str(Path(__file__).resolve().parents[2])  # run this checkout's rankscope in the ranks
    env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "rankscope.train.fsdp", job_path]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    finally:
        os.unlink(job_path)
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-1:] or ["?"]
        raise RuntimeError(f"sharded full fine-tuning failed ({nproc} processes): {tail[0][:300]}")
    return json.loads((Path(job.out_dir) / RESULT_FILE).read_text())


if __name__ == "__main__":
    run_rank(ShardedJob(**json.loads(Path(sys.argv[1]).read_text())))
