"""Memory and step time of every arm from the model's shape and the config alone, with a verdict.

Memory by part, in the training recipe rankscope uses (rankscope.train.precision): trainable
weights, their gradients and AdamW's two moments in fp32 (4 + 4 + 8 = 16 bytes per trainable
parameter, the mixed-precision rule of Rajbhandari et al., 2020, "ZeRO", sec. 3.1), the frozen base
in its storage dtype, activations at the configured batch and length, and the runtime's own
baseline. Activations follow the per-layer accounting of Korthikanti et al. (2022, "Reducing
Activation Recomputation in Large Transformer Models") adapted to a Llama block (RMSNorm in fp32,
SwiGLU, grouped k/v, fused attention that keeps no s x s matrix); with checkpointing only each
layer's input is kept and one layer is recomputed at a time. The output head is counted at
every position (the padded path; the shared-prefix path computes fewer), so the estimate is an
upper bound for rows shorter than ``train.max_length``.

Step FLOPs follow Chowdhery et al. (2022, "PaLM", appendix B): per token 2 x (matmul params) +
4 x layers x hidden x length for a forward; a full fine-tuning backward costs two forwards, a
LoRA backward one (no weight gradients for the frozen base), checkpointing one more forward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from rankscope.config import RankscopeConfig
from rankscope.plan.devices import GIB, Device
from rankscope.plan.shapes import ModelShape

FIT_FRACTION = 0.95  # of device memory an arm may plan to use (allocator fragmentation, workspaces)
CUDA_CONTEXT_GIB = 0.5  # CUDA context + cuBLAS workspace: outside the allocator's statistics
MASTER_BYTES = 4  # fp32 master weights, gradients and each AdamW moment
MAX_GPUS = 64

Verdict = Literal["fits", "needs-checkpointing", "needs-reload", "needs-gpus", "does-not-fit"]


class ArmLike(Protocol):
    arm_id: str
    method: str
    rank: int | None


@dataclass(frozen=True)
class RunSettings:
    """What the config resolves to on the planned device."""

    compute_bytes: int  # 2 under bf16-mixed, 4 in fp32
    storage_bytes: int  # the frozen base's dtype
    recipe: str
    checkpointing: Literal["auto", "true", "false"]
    sft_base_copy: Literal["auto", "keep", "reload"]
    sft_gpus: int

    @classmethod
    def resolve(cls, config: RankscopeConfig, device: Device) -> RunSettings:
        recipe = config.train.precision
        if recipe == "auto":
            recipe = "bf16-mixed" if device.kind == "cuda" else "fp32"
        dtype = config.model.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.kind == "cuda" else "float32"
        sft_gpus = int(config.sweep.sft_gpus) if config.sweep.sft_gpus and config.sweep.sft_gpus > 1 else 1
        return cls(compute_bytes=2 if recipe == "bf16-mixed" else 4, storage_bytes=4 if dtype == "float32" else 2,
                   recipe=recipe, checkpointing=config.train.gradient_checkpointing,
                   sft_base_copy=config.sweep.sft_base_copy, sft_gpus=sft_gpus)


@dataclass
class ArmEstimate:
    arm_id: str
    method: str
    rank: int | None
    trainable_params: int
    memory_gib: float  # the planned peak on one device as configured (what peak_memory_total_mb measures)
    memory_parts: dict[str, float]  # GiB by part; sums to memory_gib
    activations_gib: dict[str, float]  # with and without gradient checkpointing
    gradient_checkpointing: bool  # what the sweep will use for this arm
    base_resident: bool  # whether the base model stays in memory beside the arm
    gpus: int  # devices the arm runs on (sft_gpus for a sharded full fine-tuning)
    step_tflop: float
    step_time_s: float | None  # at the device's stated peak: a lower bound (MFU < 100%)
    verdict: Verdict
    fix: str | None  # the config change that makes the arm fit, when it does not
    message: str
    per_gpu_gib: float | None = None  # sharded full fine-tuning: the planned peak per GPU
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def fits(self) -> bool:
        return self.verdict == "fits"


def activation_bytes(shape: ModelShape, tokens: int, compute: int, residual: int, checkpointing: bool,
                     lora_inputs_per_layer: int = 0) -> int:
    """Bytes kept for the backward pass at ``tokens`` = batch x length (see the module docstring)."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_dim
    norms = 2 * (4 * h + residual * h)  # two RMSNorms: fp32 input and the normalised output
    # input cast, q/k before rotary, q/k after rotary + v, attention output, o_proj input; MLP
    # input, gate, silu(gate), up, their product (down_proj input).
    block = norms + compute * (6 * h + 3 * kv + 4 * i)
    # Under autocast, peft casts an adapted module's input to the fp32 adapter dtype and the
    # adapter matmul saves its own bf16 copy of it; in plain fp32 the base linear's input is shared.
    block += (compute if compute != MASTER_BYTES else 0) * lora_inputs_per_layer
    head = shape.vocab * (compute + 2 * MASTER_BYTES)  # logits, their fp32 copy, log-softmax / gradient
    if checkpointing:
        per_token = shape.n_layers * h * residual + block + head
    else:
        per_token = shape.n_layers * block + head
    return tokens * (per_token + h * residual)  # + the embedding output


def step_flops(shape: ModelShape, config: RankscopeConfig, method: str, trainable: int, checkpointing: bool) -> float:
    tokens = config.train.batch_size * config.train.max_length
    matmul_params = sum(m.d_in * m.d_out for m in shape.linears) + shape.vocab * shape.hidden
    forward = 2 * matmul_params + 4 * shape.n_layers * shape.hidden * config.train.max_length
    if method == "sft":
        per_token = 3 * forward
    else:
        per_token = 2 * forward + 6 * trainable
    if checkpointing:
        per_token += forward
    return per_token * tokens


def _runtime_gib(device: Device, runtime_gib: float) -> float:
    return CUDA_CONTEXT_GIB if device.kind == "cuda" else runtime_gib


def estimate_arm(arm: ArmLike, shape: ModelShape, config: RankscopeConfig, device: Device,
                 runtime_gib: float) -> ArmEstimate:
    """Plan one arm; ``runtime_gib`` is the process's own baseline on CPU (measured by the caller)."""
    settings = RunSettings.resolve(config, device)
    P = shape.n_params
    # An imported arm (rankscope.sweep.imported) only evaluates: sized like the base arm, plus a
    # copy of the base for a full checkpoint.
    imported = getattr(arm, "source", "rankscope") == "imported"
    method = "base" if imported else arm.method
    copy_gib = P * settings.storage_bytes / GIB if imported and arm.method == "sft" else 0.0
    limit = device.memory_gib * FIT_FRACTION
    if method == "lora":
        trainable = shape.lora_params(config.arms.lora, arm.rank)
        lora_inputs = shape.lora_inputs(config.arms.lora) // shape.n_layers
        residual = settings.storage_bytes
    else:
        trainable = P if method == "sft" else 0
        lora_inputs = 0
        residual = MASTER_BYTES if method == "sft" else settings.storage_bytes
    tokens = config.train.batch_size * config.train.max_length
    acts = {ckpt: activation_bytes(shape, tokens, settings.compute_bytes, residual, ckpt, lora_inputs) / GIB
            for ckpt in (False, True)}
    if method == "base":  # evaluation only: the eval batch's logits at every position
        eval_tokens = config.eval.batch_size * config.train.max_length
        acts = {ckpt: eval_tokens * shape.vocab * (settings.compute_bytes + MASTER_BYTES) / GIB for ckpt in (False, True)}
    gpus = settings.sft_gpus if method == "sft" else 1

    def parts(checkpointing: bool, keep_base: bool, shards: int) -> dict[str, float]:
        resident = P * settings.storage_bytes / GIB if keep_base else 0.0
        return {
            "runtime": round(_runtime_gib(device, runtime_gib), 3),
            "base": round(resident, 3),
            "weights": round(trainable * MASTER_BYTES / shards / GIB + copy_gib, 3),
            "gradients": round(trainable * MASTER_BYTES / shards / GIB, 3),
            "optimizer": round(trainable * 2 * MASTER_BYTES / shards / GIB, 3),
            "activations": round(acts[checkpointing], 3),
        }

    def total(p: dict[str, float]) -> float:
        return round(sum(p.values()), 3)

    # What the sweep will do: checkpointing and the base copy follow the config, `auto` choosing
    # the cheapest setting that fits.
    ckpt_options = {"true": [True], "false": [False], "auto": [False, True]}[settings.checkpointing]
    keep_options = [True] if method != "sft" else {"keep": [True], "reload": [False],
                                                        "auto": [True, False]}[settings.sft_base_copy]
    chosen = None
    for keep in keep_options:
        for ckpt in ckpt_options:
            if total(parts(ckpt, keep, gpus)) <= limit:
                chosen = (ckpt, keep)
                break
        if chosen:
            break
    ckpt, keep = chosen or (ckpt_options[-1], keep_options[-1])
    used = parts(ckpt, keep, gpus)
    unsharded = parts(ckpt, keep, 1)
    verdict, fix, message = _verdict(method, chosen is not None, ckpt, keep, gpus, settings, parts, total, limit, device)
    flops = step_flops(shape, config, method, trainable, ckpt) if method != "base" else 0.0
    return ArmEstimate(
        arm_id=arm.arm_id, method=arm.method, rank=arm.rank, trainable_params=trainable,
        memory_gib=total(unsharded), memory_parts=unsharded,
        activations_gib={"without_checkpointing": round(acts[False], 3), "with_checkpointing": round(acts[True], 3)},
        gradient_checkpointing=ckpt, base_resident=keep, gpus=gpus,
        step_tflop=round(flops / 1e12, 4),
        step_time_s=round(flops / gpus / (device.peak_tflops * 1e12), 4) if device.peak_tflops and flops else None,
        verdict=verdict, fix=fix, message=message,
        per_gpu_gib=total(used) if gpus > 1 else None,
    )


def _verdict(method: str, fits, ckpt, keep, gpus, settings: RunSettings, parts, total, limit, device: Device):
    if fits:
        notes = []
        if ckpt and settings.checkpointing == "auto":
            notes.append("gradient checkpointing on")
        if method == "sft" and not keep:
            notes.append("base reloaded around this arm instead of kept beside it")
        if gpus > 1:
            notes.append(f"sharded over {gpus} GPUs")
        return "fits", None, "fits" + (f" ({'; '.join(notes)})" if notes else "")
    if settings.checkpointing == "false" and total(parts(True, keep, gpus)) <= limit:
        return ("needs-checkpointing", "train.gradient_checkpointing=auto",
                "does not fit without gradient checkpointing")
    if method == "sft" and keep and total(parts(True, False, gpus)) <= limit:
        return "needs-reload", "sweep.sft_base_copy=auto", "does not fit beside a resident base copy"
    if method == "sft" and device.kind == "cuda":
        for n in range(max(2, gpus + 1), MAX_GPUS + 1):
            if total(parts(True, False, n)) <= limit:
                return ("needs-gpus", f"sweep.sft_gpus={n}",
                        f"full fine-tuning needs {n} GPUs sharded with FSDP (weights, gradients and optimizer state split)")
    if device.kind == "cpu":
        return ("does-not-fit", "run it on GPUs (size them with `rankscope plan CONFIG --device h200`) or use a "
                "smaller model", "does not fit this machine's memory even with gradient checkpointing")
    return ("does-not-fit", "lower train.batch_size or train.max_length, or use a device with more memory",
            "does not fit even with gradient checkpointing")


def plan_sweep(config: RankscopeConfig, shape: ModelShape, device: Device, arms: list[ArmLike],
               runtime_gib: float) -> list[ArmEstimate]:
    return [estimate_arm(arm, shape, config, device, runtime_gib) for arm in arms]
