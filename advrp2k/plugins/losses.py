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


def set_margin(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Best logit among the ``allowed`` classes (bool, per row) minus the best among the others
    (positive = the prediction is an allowed class): a targeted margin toward a set of classes,
    such as a product's siblings, that follows whichever of them is closest."""
    logits = logits.float()
    inside = logits.masked_fill(~allowed, float("-inf")).amax(1)
    outside = logits.masked_fill(allowed, float("-inf")).amax(1)
    return inside - outside
