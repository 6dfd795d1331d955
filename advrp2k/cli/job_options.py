"""The options shared by the commands that train or evaluate, and the job they describe."""
from __future__ import annotations

from pathlib import Path

import click

from advrp2k.cli.params import EpsType, parse_key_values
from advrp2k.cli.progress import progress_factory
from advrp2k.core.errors import UsageError
from advrp2k.jobs.protocols import PROTOCOLS, get_protocol

#: The nested eps grid of ``eval --curve`` (eps 0 is the clean accuracy). The engine attacks only
#: survivors and starts each eps from the previous one's points, so it costs little more than 16/255.
CURVE_EPS = "1/255,2/255,3/255,4/255,6/255,8/255,12/255,16/255"


def _apply(f, opts):
    for opt in reversed(opts):
        f = opt(f)
    return f


def _data_options(f):
    """Options shared by every command that trains or evaluates (defaults from the protocol)."""
    return _apply(f, [
        click.option("--data", type=click.Path(path_type=Path), help="Your RP2K download (any of its three levels)."),
        click.option("--dataset", help="Dataset plugin; default rp2k with --data, else rp2k_synth (synthetic)."),
        click.option("--attributes", type=click.Path(path_type=Path),
                     help="Per-SKU attribute CSV (sku, product_type, shape, ...) for per-group results."),
        click.option("--protocol", default="quick", show_default=True, type=click.Choice(sorted(PROTOCOLS)),
                     help="Named defaults for arch, epochs, schedule and attack steps."),
        click.option("--arch", help="Architecture (advrp2k list archs), or rb:<RobustBench ImageNet Linf model>; "
                                    "default from the protocol."),
        click.option("--pretrained", type=click.Choice(["none", "imagenet"]), default="none", show_default=True,
                     help="Start from torchvision's ImageNet weights (resnet18/34/50) and fine-tune."),
        click.option("--model-dir", type=click.Path(path_type=Path),
                     help="Folder of pretrained weights (default $ADVRP2K_HOME/weights); nothing is downloaded."),
        click.option("--augment", type=click.Choice(["none", "paper"]), default="none", show_default=True,
                     help="Training augmentation: the RP2K paper's border, crop, perspective and brightness."),
        click.option("--epochs", type=click.IntRange(min=1), help="Training epochs; default from the protocol."),
        click.option("--image-size", type=click.IntRange(min=8), help="Square input size in pixels."),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
        click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]),
                     help="Attack and training steps: auto is bf16 on CUDA, fp32 on a CPU; verdicts are always fp32."),
        click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (GPU; minutes to compile)."),
        click.option("--seed", default=0, show_default=True, type=int),
    ])


def _job_options(f):
    """Options of train and eval: the data options plus the defense."""
    return _apply(_data_options(f), [
        click.option("--defense", default="standard", show_default=True,
                     help="Defense plugin name (advrp2k list defenses); standard is plain training."),
        click.option("--eps", type=EpsType(), help="The defense's training budget: k/255 or a float in (0, 1]."),
        click.option("--defense-arg", "defense_args", multiple=True, metavar="KEY=VALUE",
                     help="Option passed to the defense plugin (repeatable), e.g. steps=10."),
        click.option("--checkpoint", type=click.Path(path_type=Path), help="Use this trained model instead of training."),
    ])


def _make_job(data, dataset, attributes, protocol, arch, epochs, image_size, device, seed, precision="auto",
              compile_model=False, pretrained="none", model_dir=None, augment="none", defense="standard", eps=None,
              defense_args=(), checkpoint=None, **extra):
    from advrp2k.jobs.run import Job

    if data is not None and not data.exists():
        raise UsageError(f"--data {data} does not exist: pass the folder you unzipped RP2K into")
    if checkpoint is not None and not checkpoint.is_file():
        raise UsageError(f"--checkpoint {checkpoint} is not a file")
    proto = get_protocol(protocol).override(arch=arch, epochs=epochs, image_size=image_size)
    try:
        args = parse_key_values(defense_args)
    except click.BadParameter as exc:
        raise UsageError(f"--defense-arg: {exc.message}")
    return Job(defense=defense, eps=eps, defense_args=args, data=data, dataset=dataset, attributes=attributes,
               protocol=proto,
               checkpoint=checkpoint, device=device, seed=seed, precision=precision, compile=compile_model,
               pretrained=None if pretrained == "none" else pretrained, model_dir=model_dir, augment=augment,
               explicit={k: v for k, v in {"arch": arch, "image_size": image_size}.items() if v is not None},
               progress=progress_factory(), **extra)
