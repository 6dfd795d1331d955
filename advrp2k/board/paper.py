"""The RP2K paper's published numbers (Peng et al. 2020), shown beside measured ones and never ranked."""
from __future__ import annotations

#: Table 5 of Peng et al. 2020 (ResNet-34 on RP2K), as fractions.
TABLE5 = {
    ("standard", None): {"clean_acc": 0.9518, "robust_acc": {"4/255": 0.0, "8/255": 0.0}},
    ("madry", "4/255"): {"clean_acc": 0.4014, "robust_acc": {"4/255": 0.1235, "8/255": 0.0}},
    ("madry", "8/255"): {"clean_acc": 0.2090, "robust_acc": {"4/255": 0.1174, "8/255": 0.0526}},
}
TABLE5_ROWS = {("standard", None): "Regular", ("madry", "4/255"): "Adv. Train (eps = 4/255)",
               ("madry", "8/255"): "Adv. Train (eps = 8/255)"}

#: Table 3 of Peng et al. 2020 (ResNet-34 on RP2K), top-1 and top-5, as fractions.
TABLE3 = {("scratch", "none"): {"top1": 0.9518, "top5": 0.9901}, ("imagenet", "none"): {"top1": 0.9554, "top5": 0.9904},
          ("scratch", "paper"): {"top1": 0.9041, "top5": 0.9474}, ("imagenet", "paper"): {"top1": 0.9089, "top5": 0.9501}}
TABLE3_SCHEMES = {"scratch": "Scratch", "imagenet": "Pre-train", "robust": "Robust pre-train"}
