"""The greedy token of a float32 output head, found with a bfloat16 screen and a proven error bound.

Greedy decoding needs only the argmax of the logits, yet computing them is one of the largest
matrix products of a decoding step: the output head of SmolLM2-135M is 49152 x 576, a fifth of
the model's weights, read and multiplied in full for every new token. With bfloat16 arithmetic in
hardware (CPUs with AVX512-BF16 or AMX, CUDA GPUs) the same product costs a fraction of the float32
one (measured on 2 AVX512-BF16 cores, 16 rows: 3.0 ms against 14.3 ms), but its logits differ from
float32 by up to ~0.5 here, far more than the gap between the two best tokens can be.

So the bfloat16 logits only screen, with a bound that makes the screen safe. For a row x and a
token's weight row w (x_b, w_b their bfloat16 roundings, u = 2^-24 float32's unit roundoff,
gamma = K u / (1 - K u) for K-term dot products, Higham, *Accuracy and Stability of Numerical
Algorithms*, 2002, section 3.1):

    |x.w - x_b.w_b| <= |x - x_b| |w| + |x_b| |w - w_b|        (Cauchy-Schwarz, twice)
    float32 accumulation of x_b.w_b adds <= gamma |x_b| |w_b|; the float32 reference that plain
    decoding computes differs from x.w by <= gamma |x| |w|

Summing these gives err(token) with |screen - reference| <= err for every token. The reference's
argmax t then satisfies screen_t + err_t >= reference_t >= reference_j >= screen_j - err_j for
every j, so t is among the candidates {i: screen_i + err_i >= max_j (screen_j - err_j)}. On real
hidden states the candidates are 1-8 tokens (median 1). Their float32 logits are recomputed from
the float32 weights and the best is taken.

The recomputed logits are float32 dot products summed in another order than the full matrix
product, so they can differ from the plain logits in the last bits. Two candidates within ~1e-5
of each other (a near-tie, float rounding decides it either way) may therefore come out the other
way round, as they may between two batch sizes of the plain product.
``bench/generate.py`` counts such differences apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

UNIT_ROUNDOFF = 2.0 ** -24  # float32
BOUND_SLACK = 1.001  # covers the float32 rounding in computing the bound itself (relative ~K u)
MAX_CANDIDATES_PER_ROW = 64  # beyond this the screen saves nothing: the full float32 product runs


def fast_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run in hardware here (else the screen costs more than it saves)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


@dataclass(frozen=True)
class ScreenedHead:
    """A float32 ``nn.Linear`` output head (no bias) with its bfloat16 copy and per-token norms."""

    weight: torch.Tensor  # [V, K] float32, the head's own weights (not a copy)
    weight_bf16: torch.Tensor  # [V, K]
    weight_norm: torch.Tensor  # [V]: |w|
    rounding_norm: torch.Tensor  # [V]: |w - w_b|

    @staticmethod
    def of(model: nn.Module) -> ScreenedHead | None:
        """The screened head of ``model``, or None where the screen does not apply or would not pay.

        It applies to a plain float32 ``nn.Linear`` head without bias (a LoRA-wrapped head, a
        bias or another dtype take the plain path) on hardware with fast bfloat16. Whether the
        model's logits are this head's output (up to a monotone map such as soft-capping, which
        keeps the argmax) is checked by the caller against plain decoding.
        """
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if type(head) is not nn.Linear or head.bias is not None or head.weight.dtype != torch.float32:
            return None
        if not fast_bfloat16(head.weight.device):
            return None
        return ScreenedHead.of_weight(head.weight)

    @staticmethod
    def of_weight(weight: torch.Tensor) -> ScreenedHead:
        """The screen of a float32 head weight ([V, K]), wherever it runs."""
        weight = weight.detach()  # [V, K]
        weight_bf16 = weight.to(torch.bfloat16)  # [V, K]
        return ScreenedHead(weight=weight, weight_bf16=weight_bf16, weight_norm=weight.norm(dim=1),
                            rounding_norm=(weight - weight_bf16.float()).norm(dim=1))

    def error_bound(self, hidden: torch.Tensor, hidden_bf16: torch.Tensor) -> torch.Tensor:
        """err [b, V] with |screen logit - float32 logit| <= err for every row and token (see module doc)."""
        terms = self.weight.shape[1]
        gamma = terms * UNIT_ROUNDOFF / (1 - terms * UNIT_ROUNDOFF)
        norm, norm_bf16 = hidden.norm(dim=1), hidden_bf16.float().norm(dim=1)  # [b]
        rounding = (hidden - hidden_bf16.float()).norm(dim=1)  # [b]
        # |w_b| <= |w| + |w - w_b| turns gamma |x_b| |w_b| into terms of the two stored norms.
        per_weight_norm = rounding + gamma * (norm_bf16 + norm)  # [b]
        per_rounding_norm = norm_bf16 * (1 + gamma)  # [b]
        coefficients = torch.stack([per_weight_norm, per_rounding_norm], dim=1)  # [b, 2]
        norms = torch.stack([self.weight_norm, self.rounding_norm])  # [2, V]
        return (coefficients @ norms) * BOUND_SLACK  # [b, V]

    def argmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """The greedy token of each row of ``hidden`` ([b, K] float32) under the float32 head: [b]."""
        hidden_bf16 = hidden.to(torch.bfloat16)  # [b, K]
        screen = nn.functional.linear(hidden_bf16, self.weight_bf16).float()  # [b, V]
        error = self.error_bound(hidden, hidden_bf16)  # [b, V]
        floor = (screen - error).max(dim=1, keepdim=True).values  # [b, 1]: no row's winner scores below
        rows, tokens = (screen + error >= floor).nonzero(as_tuple=True)  # [c] each
        if rows.numel() > MAX_CANDIDATES_PER_ROW * hidden.shape[0]:
            return nn.functional.linear(hidden, self.weight).argmax(dim=1)
        exact = (hidden[rows] * self.weight[tokens]).sum(dim=1)  # [c]: float32 logits of the candidates
        logits = screen.new_full(screen.shape, float("-inf"))  # [b, V]
        logits[rows, tokens] = exact
        return logits.argmax(dim=1)  # the lowest index among equal maxima, as a plain argmax
