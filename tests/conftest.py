"""Shared fixtures: an isolated cache, tiny models, and a fake RP2K release with its quirks."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advrp2k.data.synth import SynthConfig, generate

# The project's machines have 2 cores; ADVRP2K_TEST_THREADS=1 leaves one free for a job beside the tests
# (two processes with 2 threads each on 2 cores slow each other down by an order of magnitude).
torch.set_num_threads(int(os.environ.get("ADVRP2K_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own cache and results folders; no progress bars in test output."""
    monkeypatch.setenv("ADVRP2K_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADVRP2K_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ADVRP2K_NO_PROGRESS", "1")
    return tmp_path / "home"


TINY_SYNTH = SynthConfig(n_lines=4, siblings=(2, 2), max_train=24, min_train=10, min_test=3, seed=3)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A small synthetic dataset (8 SKUs) in the release layout, generated once per session."""
    return generate(tmp_path_factory.mktemp("synth") / "tiny", TINY_SYNTH)


def jpeg_bytes(seed: int, mode: str = "RGB", size: int = 20) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def mojibake(name: str) -> str:
    """What a tool that decodes UTF-8 zip names as CP437 shows."""
    return name.encode("utf-8").decode("cp437")


SKUS = ["555（双冰）", "Seasir虾油露", "三得利啤酒超纯7.5度500罐啤组合装", "贝纳颂经典系列250ml蓝山"]


@pytest.fixture
def fake_release(tmp_path) -> Path:
    """A download folder mimicking the real RP2K release and its defects.

    * SKU 0 in train sits in a folder unzipped as CP437 mojibake (repairable);
    * SKU 1 in test sits in a folder garbled beyond repair (resolved through meta.csv basenames);
    * SKU 2 exists only in train, SKU 3 only in test;
    * meta.csv with a BOM and backslash paths; junk files; a truncated JPEG; grayscale and CMYK JPEGs;
      a Chinese image basename.
    """
    top = tmp_path / "download"
    root = top / "rp2k_dataset"
    layout = {("train", 0): 3, ("train", 1): 3, ("train", 2): 2, ("test", 0): 2, ("test", 1): 2, ("test", 3): 2}
    rows = []
    seed = 0
    for (split, k), n in layout.items():
        folder = SKUS[k]
        if (split, k) == ("train", 0):
            folder = mojibake(SKUS[0])
        if (split, k) == ("test", 1):
            folder = "Seasirn+êså¦té½n+ë"
        d = root / "all" / split / folder
        d.mkdir(parents=True)
        for i in range(n):
            seed += 1
            name = f"{k:02d}{i:02d}_{seed}.jpg" if i else f"微信图片_{k}_{seed}.jpg"
            mode = {1: "L", 2: "CMYK"}.get(seed % 5, "RGB")
            (d / name).write_bytes(jpeg_bytes(seed, mode))
            rows.append(f"all\\{split}\\{SKUS[k]}\\{name},{SKUS[k]},shelf")
    d = root / "all" / "train" / SKUS[1]
    good = jpeg_bytes(99)
    (d / "0199_truncated.jpg").write_bytes(good[: len(good) // 2])
    rows.append(f"all\\train\\{SKUS[1]}\\0199_truncated.jpg,{SKUS[1]},shelf")
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (d / "._0100_1.jpg").write_bytes(b"\x00\x05\x16\x07")
    (d / "Thumbs.db").write_bytes(b"junk")
    (d / "截屏2019-12-10下午5.15.14.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "all" / "train" / "__MACOSX" / SKUS[1]).mkdir(parents=True)
    (root / "all" / "train" / "__MACOSX" / SKUS[1] / "._x.jpg").write_bytes(b"junk")
    (top / "meta.csv").write_text("image_path,instance_id,domain\n" + "\n".join(rows) + "\n", encoding="utf-8-sig")
    return top


class LinearModel(torch.nn.Module):
    """logits = W flatten(x) + b; its l_inf robustness has a closed form for two classes."""

    def __init__(self, dim: int, seed: int = 0, classes: int = 2):
        super().__init__()
        self.fc = torch.nn.Linear(dim, classes)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(classes, dim, generator=g) * 0.1)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def tiny_cnn(classes: int = 4, bn: bool = True, seed: int = 0) -> torch.nn.Module:
    """Conv + BatchNorm + linear head on 8x8 images: varied predictions, breakable at 4/255 and 8/255."""
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(3, 8, 3, padding=1)]
    if bn:
        layers.append(torch.nn.BatchNorm2d(8))
    layers += [torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(512, classes)]
    return torch.nn.Sequential(*layers)
