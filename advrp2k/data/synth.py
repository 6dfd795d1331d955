"""``rp2k_synth``: a deterministic RP2K-like fine-grained retail dataset, written to disk in
the release's own layout (``all/train``, ``all/test``, ``meta.csv``, ``attributes.csv``), so the
real loader reads it.

Difficulty structure, after the paper: SKUs belong to product lines (one of 7 product types
and 7 shapes, a brand palette and pattern); sibling SKUs of a line share everything but a
small, low-contrast label detail (flavour: a tint patch; size: a count of tiny bars), as in
Fig. 1. Each photo adds shelf nuisances: 1/f natural-image texture behind and on the product,
perspective, lighting +-20 %, colour cast, shelf borders, off-centre crops, sensor noise and
JPEG compression. SKU counts are long-tailed. Results on it are always labelled synthetic.
"""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from advrp2k.core.locks import item_lock
from advrp2k.plugins.registry import register_dataset
from advrp2k.core.paths import cache_dir
from advrp2k.data.source import DataSource, synthetic_marker, write_marker

GENERATOR_VERSION = 1
PRODUCT_TYPES = ("dairies", "liquors", "beers", "cosmetics", "non-alcoholic drinks", "seasonings", "tobacco")
SHAPES = ("bottle", "can", "box", "bag", "jar", "handled bottle", "pack")
_TYPE_CN = ("乳品", "白酒", "啤酒", "化妆品", "饮料", "调味品", "香烟")
_BRANDS_CN = ("星河", "蓝山", "金禾", "白鹭", "青松", "红枫", "海岳", "云朵", "长城", "丰收", "明月", "东方")
_FLAVOURS_CN = ("原味", "草莓", "柠檬", "薄荷", "蜂蜜", "香草")
_SIZES = ("250ml", "500ml", "1L")
# Mean body colour per product type (RGB in [0, 1]), so types are visually coherent groups.
_TYPE_COLOURS = np.array([[.85, .88, .95], [.45, .15, .15], [.75, .62, .2], [.85, .55, .75],
                          [.3, .7, .4], [.7, .3, .15], [.3, .3, .35]])
CANVAS = 44  # pixels rendered; loaders resize to --image-size (32 by default)


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator; the defaults are the embedded benchmark."""

    n_lines: int = 21
    siblings: tuple[int, int] = (2, 4)
    max_train: int = 300
    min_train: int = 30
    tail_exponent: float = 0.6
    test_fraction: float = 0.15
    min_test: int = 4
    detail_contrast: float = 0.4
    seed: int = 0


@dataclass(frozen=True)
class Sku:
    name: str
    line: int
    product_type: int
    shape: int
    brand: str
    flavour: int
    size: int
    n_train: int
    n_test: int


def make_catalogue(cfg: SynthConfig) -> list[Sku]:
    """SKUs grouped in product lines with long-tailed image counts (deterministic in ``cfg.seed``)."""
    rng = np.random.default_rng(cfg.seed)
    skus, names = [], set()
    for line in range(cfg.n_lines):
        ptype, shape = line % 7, (line * 3 + line // 7) % 7  # every type meets several shapes
        brand = _BRANDS_CN[line % len(_BRANDS_CN)] + ("" if line < len(_BRANDS_CN) else "优选")
        n_sib = int(rng.integers(cfg.siblings[0], cfg.siblings[1] + 1))
        # Siblings vary in flavour or in size, never both: the difference stays one detail.
        vary_size = bool(rng.random() < 0.4)
        n_sib = min(n_sib, len(_SIZES)) if vary_size else n_sib
        for s in range(n_sib):
            flavour, size = (0, s % 3) if vary_size else (s % 6, 0)
            name = f"{brand}{_TYPE_CN[ptype]}{_FLAVOURS_CN[flavour]}{_SIZES[size]}"
            assert name not in names, name
            names.add(name)
            skus.append((name, line, ptype, shape, brand, flavour, size))
    ranks = rng.permutation(len(skus)) + 1
    out = []
    for (name, line, ptype, shape, brand, flavour, size), rank in zip(skus, ranks):
        n_train = max(cfg.min_train, int(cfg.max_train * rank ** -cfg.tail_exponent))
        n_test = max(cfg.min_test, int(round(n_train * cfg.test_fraction)))
        out.append(Sku(name, line, ptype, shape, brand, flavour, size, n_train, n_test))
    # One SKU exists only in train, as ~71 do in the real release.
    last = out[-1]
    out[-1] = Sku(last.name, last.line, last.product_type, last.shape, last.brand, last.flavour, last.size,
                  last.n_train, 0)
    return out


def _pink_noise(rng, h: int, w: int) -> np.ndarray:
    """1/f-spectrum noise in [0, 1]: the power law of natural images."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy ** 2 + fx ** 2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
    img = np.fft.irfft2(spec, s=(h, w))
    return (img - img.min()) / (np.ptp(img) + 1e-8)


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Silhouette on normalised coordinates u, v in [-1, 1]."""
    if shape == 0:  # bottle: body, shoulder, neck
        return ((abs(u) < .34) & (v > -.2) & (v < .9)) | ((u / .34) ** 2 + ((v + .2) / .3) ** 2 < 1) | \
               ((abs(u) < .12) & (v > -.85) & (v < -.2))
    if shape == 1:  # can
        return (abs(u) < .42) & (abs(v) < .78)
    if shape == 2:  # box
        return (abs(u) < .72) & (abs(v) < .55)
    if shape == 3:  # bag: pillow outline
        return (abs(u) < .5 + .12 * np.cos(v * np.pi / 1.4)) & (abs(v) < .72)
    if shape == 4:  # jar: wide body and lid
        return ((abs(u) < .55) & (v > -.35) & (v < .7)) | ((abs(u) < .48) & (v > -.58) & (v <= -.35))
    if shape == 5:  # handled bottle: bottle plus a ring handle
        ring = np.sqrt((u - .42) ** 2 + (v + .05) ** 2)
        return _shape_mask(0, u, v) | ((ring > .13) & (ring < .24) & (u > .3))
    return (abs(np.mod(u + 1.05, .7) - .35) < .28) & (abs(u) < .98) & (abs(v) < .6)  # pack of three


class _Line:
    """Everything siblings of a product line share: palette, pattern, brand mark."""

    def __init__(self, sku: Sku, seed: int):
        rng = np.random.default_rng([seed, 7919, sku.line])
        self.body = np.clip(_TYPE_COLOURS[sku.product_type] + rng.normal(0, .12, 3), .05, .95)
        self.label = np.clip(rng.uniform(.1, .95, 3), 0, 1)
        self.mark = np.clip(1 - self.label + rng.normal(0, .1, 3), 0, 1)
        self.stripe_freq, self.stripe_angle = rng.uniform(2, 6), rng.uniform(0, np.pi)
        self.mark_kind = int(rng.integers(0, 3))
        self.label_top = rng.uniform(-.1, .1)


def _render_product(sku: Sku, line: _Line, cfg: SynthConfig, rng) -> np.ndarray:
    s = CANVAS
    scale = rng.uniform(.8, 1.05)
    du, dv = rng.uniform(-.08, .08, 2)
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1) * 2 - 1
    u, v = (xx - du) / scale, (yy - dv) / scale
    img = _pink_noise(rng, s, s)[..., None] * rng.uniform(.3, .9, 3) + rng.uniform(0, .3, 3)  # shelf
    body = _shape_mask(sku.shape, u, v)
    tex = _pink_noise(rng, s, s)[..., None]
    stripes = .5 + .5 * np.sin(line.stripe_freq * np.pi * (u * np.cos(line.stripe_angle) + v * np.sin(line.stripe_angle)))
    colour = line.body * (.75 + .25 * stripes[..., None]) * (.85 + .3 * tex)
    img = np.where(body[..., None], colour, img)
    label = body & (abs(u) < .3) & (v > line.label_top) & (v < line.label_top + .42)
    img = np.where(label[..., None], line.label * (.92 + .16 * tex), img)
    img = np.where((label & _brand_mark(line, u, v))[..., None], line.mark, img)
    return _draw_detail(img, sku, line, cfg, u, v, label)


def _brand_mark(line: _Line, u, v) -> np.ndarray:
    cv = v - line.label_top - .12
    if line.mark_kind == 0:
        return abs(cv) < .05
    if line.mark_kind == 1:
        return (u ** 2 + cv ** 2) < .012
    return abs(u + cv) < .05


def _draw_detail(img, sku: Sku, line: _Line, cfg: SynthConfig, u, v, label) -> np.ndarray:
    """The only thing that tells siblings apart: a small, low-contrast patch on the label."""
    top = line.label_top + .24
    patch = label & (u > -.27) & (u < .27) & (v > top - .04) & (v < top + .16)
    c = cfg.detail_contrast
    tint = np.array([np.cos(sku.flavour * 2.1), np.cos(sku.flavour * 2.1 + 2.1), np.cos(sku.flavour * 2.1 + 4.2)])
    if sku.flavour:
        img = np.where(patch[..., None], np.clip(line.label + c * tint, 0, 1), img)
    bars = np.zeros_like(patch)
    for b in range(sku.size + 1):  # one, two or three tiny bars mark the pack size
        x0 = -.25 + b * .18
        bars |= (u > x0) & (u < x0 + .1)
    sign = -1 if line.label.mean() > .5 else 1
    return np.where((patch & bars)[..., None], np.clip(img + sign * c, 0, 1), img)


def _shelf_photo(img: np.ndarray, rng, shape: tuple[int, int] | None = None) -> bytes:
    """Lighting, colour cast, perspective, crop, border, noise and JPEG: one shelf crop
    (``shape``: its (width, height) in pixels; the canvas size when None)."""
    img = img * rng.uniform(.8, 1.2) + rng.normal(0, .04, 3)
    img = np.clip(img + rng.normal(0, .02, img.shape), 0, 1)
    pil = Image.fromarray((img * 255).astype(np.uint8))
    s = CANVAS
    j = s * .1
    # PIL's QUAD order: upper-left, lower-left, lower-right, upper-right.
    corners = np.array([[0, 0], [0, s], [s, s], [s, 0]]) + rng.uniform(-j, j, (4, 2))
    pil = pil.transform((s, s), Image.QUAD, tuple(corners.ravel()), Image.BILINEAR)
    c = rng.uniform(.85, 1.0)
    x0, y0 = rng.uniform(0, s * (1 - c), 2)
    pil = pil.crop((x0, y0, x0 + s * c, y0 + s * c)).resize((s, s), Image.BILINEAR)
    arr = np.asarray(pil).copy()
    band = int(rng.integers(0, 5))
    if band:  # shelf edge at top or bottom
        rows = slice(0, band) if rng.random() < .5 else slice(s - band, s)
        arr[rows] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    photo = Image.fromarray(arr)
    if shape is not None:
        photo = photo.resize(shape, Image.BILINEAR)
    photo.save(buf, format="JPEG", quality=int(rng.integers(55, 96)))
    return buf.getvalue()


def generate(out: Path, cfg: SynthConfig = SynthConfig(), progress=None) -> Path:
    """Write the dataset to ``out`` (atomically: a temp folder renamed into place)."""
    def fill(tmp: Path) -> None:
        catalogue = make_catalogue(cfg)
        _write_tables(tmp, catalogue, _write_images(tmp, catalogue, cfg, progress))
        write_marker(tmp, "rp2k_synth", f"rp2k_synth v{GENERATOR_VERSION}, seed {cfg.seed}", seed=cfg.seed)

    return write_dataset(out, f"the synthetic dataset {out}", fill)


def write_dataset(out: Path, what: str, fill) -> Path:
    """Write a dataset folder to ``out`` once: ``fill(tmp)`` builds it in a temporary sibling folder
    that is then renamed into place (and removed on failure); locked, so that concurrent runs
    build it once and the others reuse it."""
    out = Path(out)
    if (out / "all").is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with item_lock(out, what):
        if (out / "all").is_dir():  # another run generated it while this one waited
            return out
        tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=out.parent))
        try:
            fill(tmp)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _write_images(root: Path, catalogue: list[Sku], cfg: SynthConfig, progress) -> list[tuple[str, str]]:
    rows = []
    it = progress(catalogue, total=len(catalogue), desc="generating rp2k_synth") if progress else catalogue
    for k, sku in enumerate(it):
        line = _Line(sku, cfg.seed)
        for split, n in (("train", sku.n_train), ("test", sku.n_test)):
            folder = root / "all" / split / sku.name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([cfg.seed, k, 0 if split == "train" else 1])
            for i in range(n):
                fname = f"{k:04d}_{i:05d}.jpg"
                (folder / fname).write_bytes(_shelf_photo(_render_product(sku, line, cfg, rng), rng))
                rows.append((f"all/{split}/{sku.name}/{fname}", sku.name))
    return rows


def _write_tables(root: Path, catalogue: list[Sku], rows) -> None:
    with open(root / "meta.csv", "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "instance_id", "domain"])
        writer.writerows([(p, sku, "synthetic") for p, sku in rows])
    with open(root / "attributes.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "product_type", "shape", "brand", "size", "flavour"])
        for s in catalogue:
            writer.writerow([s.name, PRODUCT_TYPES[s.product_type], SHAPES[s.shape], s.brand,
                             _SIZES[s.size], _FLAVOURS_CN[s.flavour]])


@register_dataset("rp2k_synth")
class SynthDataset:
    """The embedded default: generated on first use into the cache (``$ADVRP2K_HOME``)."""

    synthetic = True
    default_image_size = 32
    config = SynthConfig()

    def locate(self, data=None, progress=None) -> DataSource:
        cfg = self.config
        out = cache_dir("datasets") / f"rp2k_synth-v{GENERATOR_VERSION}-seed{cfg.seed}"
        if data is not None:
            out = Path(data)
            marker = synthetic_marker(out)
            if marker is not None and marker.get("dataset", "rp2k_synth") != "rp2k_synth":
                # another stand-in (advrp2k data synth): named and described as what it is
                return DataSource(marker["dataset"], out, True, f"{marker.get('description', 'advrp2k stand-in')} "
                                  f"(SYNTHETIC): not RP2K images", self.default_image_size)
        root = generate(out, cfg, progress)
        desc = f"rp2k_synth v{GENERATOR_VERSION} (SYNTHETIC, seed {cfg.seed}): not RP2K images"
        return DataSource("rp2k_synth", root, True, desc, self.default_image_size)
