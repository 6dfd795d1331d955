"""Per-example attack losses (summed by callers, so each example's gradient is its own)."""
import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")  # fp32 even under bf16 autocast


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin: best wrong logit minus the true logit (positive = fooled)."""
    logits = logits.float()  # fp32 even under bf16 autocast
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.amax(1) - true


LOSSES = {"ce": cross_entropy, "cw": margin}
