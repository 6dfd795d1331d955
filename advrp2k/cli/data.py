"""The ``advrp2k data`` commands: write a stand-in, prepare the decoded cache, inspect a copy, list its classes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from advrp2k.cli.group import cli
from advrp2k.cli.progress import progress_factory
from advrp2k.core.errors import UsageError


VERIFY_HELP = ("Decode and hash every file in full instead of reusing the cached scan (whose key covers each "
               "file's size, time and first and last 4 KiB), and replace the cached scan.")


@cli.group("data")
def data_group():
    """Write a stand-in, prepare the decoded cache, or inspect a copy of RP2K."""


@data_group.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--skus", type=click.IntRange(min=2, max=100_000), default=2388, show_default=True, help="SKUs (RP2K: 2,388).")
@click.option("--images", type=click.IntRange(min=2), default=384_311, show_default=True,
              help="Total images, long-tailed over the SKUs (RP2K: 384,311).")
@click.option("--size", type=click.IntRange(min=16, max=1024), default=224, show_default=True,
              help="Typical crop side in pixels; crops vary from 0.36x to 1.8x of it (RP2K: 80 to 400 px around 224).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: the CPU count, at most 8).")
def synth_cmd(out, skus, images, size, seed, workers):
    """Write the embedded generator's dataset at any scale up to RP2K's, in the release layout.

    The stand-in carries RP2K's structure (product lines with look-alike siblings, a long tail
    with single-image SKUs and one catch-all class, train-only and test-only SKUs, varied crop
    sizes); everything evaluated on it is labelled synthetic.
    """
    from advrp2k.core.io import check_output_dir
    from advrp2k.data.synth_scale import estimate_bytes, generate_scaled

    if (out / "all").is_dir():
        raise UsageError(f"{out} already holds a dataset: choose another folder or delete it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: pass a new folder for the dataset")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty: pass a new or empty folder (the dataset is written there whole)")
    if skus > images:
        raise UsageError(f"--images {images} is fewer than --skus {skus}: every SKU needs at least one image")
    check_output_dir(out.parent, "OUT's folder")
    click.echo(f"writing {skus} SKUs, about {images} images (about {estimate_bytes(images, size) / 2**30:.1f} GiB) "
               f"to {out}", err=True)
    generate_scaled(out, skus, images, size, seed, workers, progress_factory())
    click.echo(f"wrote {out}: check it with 'advrp2k data inspect {out}'")


@data_group.command("prepare")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--image-size", type=click.IntRange(min=8, max=1024), default=224, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Decoding processes (default: the CPU count, at most 8).")
@click.option("--verify", is_flag=True, help=VERIFY_HELP)
def prepare_cmd(path, image_size, workers, verify):
    """Decode every usable image under PATH once into uint8 shards (resumable, checksummed).

    Training and evaluation at this image size then read the shards instead of decoding JPEGs;
    every open verifies the shards' checksums. Disk: 3 x SIZE x SIZE bytes per image (150 kB at
    224 px, 27 kB at 96 px); checked first.
    """
    from advrp2k.core.io import check_output_dir
    from advrp2k.data import scan_rp2k
    from advrp2k.data.prepared import bytes_per_image, check_space, is_prepared, prepare, prepared_dir
    from advrp2k.core.paths import cache_home

    if not path.exists():
        raise UsageError(f"{path} does not exist: pass the folder you unzipped RP2K into")
    check_output_dir(cache_home(), "the cache folder (ADVRP2K_HOME)")
    scan = scan_rp2k(path, progress=progress_factory(), use_cache=not verify)
    n = sum(len(v) for v in scan.samples.values())
    if not n:
        raise UsageError(f"{path} has no usable image: run 'advrp2k data inspect {path}'")
    if is_prepared(scan, image_size):
        click.echo(f"already prepared: {prepared_dir(scan.fingerprint, image_size)}")
        return
    check_space(scan, image_size)
    click.echo(f"preparing {n} images at {image_size} px (about {n * bytes_per_image(image_size) / 2**30:.2f} GiB)",
               err=True)
    try:
        folder = prepare(scan, image_size, workers, progress_factory())
    except KeyboardInterrupt:
        click.echo("Interrupted: the shards written so far are kept; run the same command again to resume.", err=True)
        sys.exit(130)
    click.echo(f"prepared {folder}")


@data_group.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a summary.")
@click.option("--verify", "--no-cache", "verify", is_flag=True, help=VERIFY_HELP)
def inspect_cmd(path, as_json, verify):
    """Decode every image under PATH and report what the loader will use."""
    from advrp2k.data import scan_rp2k

    if not path.exists():
        raise UsageError(f"{path} does not exist: pass the folder you unzipped RP2K into")
    scan = scan_rp2k(path, progress=progress_factory(), use_cache=not verify)
    s = scan.summary()
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False, indent=2))
        return
    click.echo(f"root: {s['root']}\nmeta.csv: {s['meta_csv'] or '(none: SKU names from folder names)'}")
    click.echo(f"SKUs: {s['n_skus']}; usable images: train {s['n_images']['train']}, test {s['n_images']['test']}")
    click.echo(f"SKUs only in train: {s['skus_only_in']['train']}, only in test: {s['skus_only_in']['test']}")
    c = s["images_per_sku"]
    click.echo(f"images per SKU: median {c['median']}, min {c['min']}, max {c['max']}; "
               f"{c['skus_with_one_image']} SKUs with a single image")
    for folder, sku in s["renamed_folders"].items():
        click.echo(f"folder {folder!r} -> SKU {sku!r}")
    for note in s["notes"]:
        click.echo(f"note: {note['path']}: {note['note']}")
    click.echo(f"refused files: {len(s['problems'])}")
    for p in s["problems"][:50]:
        click.echo(f"  {p['path']}: {p['reason']}")
    if len(s["problems"]) > 50:
        click.echo(f"  ... {len(s['problems']) - 50} more (use --json for all)")
    click.echo(f"fingerprint: {s['fingerprint']}")
    usable = s["n_images"]["train"] + s["n_images"]["test"]
    if usable == 0 or s["n_skus"] < 2:
        what = "no usable image" if usable == 0 else f"{s['n_skus']} SKU (a classifier needs at least two)"
        click.echo(f"Error: {path} has {what}: advrp2k cannot train or evaluate on it; see the refused files above",
                   err=True)
        raise SystemExit(1)


@data_group.command("classes")
@click.option("--data", type=click.Path(path_type=Path), help="Your RP2K download (default: the embedded stand-in).")
@click.option("--dataset", help="Dataset plugin; default rp2k with --data, else rp2k_synth (synthetic).")
def classes_cmd(data, dataset):
    """Print the data's class order, one SKU per line: the order a model's outputs must follow
    (what ``eval --classes dataset`` and ``benchmark(..., classes="dataset")`` mean)."""
    from advrp2k.api import dataset_classes

    if data is not None and not data.exists():
        raise UsageError(f"--data {data} does not exist: pass the folder you unzipped RP2K into")
    for name in dataset_classes(data, dataset):
        click.echo(name)
