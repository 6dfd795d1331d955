"""Dataset plugins: each locates (or writes) a folder in the RP2K release layout that one loader reads.

(In advrp2k "prepare" means one thing only: the decoded cache of ``advrp2k data prepare``.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advrp2k.plugins.registry import DATASETS, register_dataset
from advrp2k.core.errors import DataError


@dataclass
class DataSource:
    """A located dataset: where it is on disk and what it is."""

    name: str
    root: Path
    synthetic: bool
    description: str
    default_image_size: int


@register_dataset("rp2k")
class Rp2kDataset:
    """The real RP2K release (Peng et al. 2020), from a folder the user downloaded."""

    synthetic = False
    default_image_size = 64  # quick protocol; --protocol paper uses 224

    def locate(self, data: str | Path | None, progress=None) -> DataSource:
        if data is None:
            raise DataError("dataset rp2k needs --data PATH pointing at your RP2K download "
                            "(or leave out --dataset to use the embedded synthetic default)")
        from advrp2k.data.rp2k import find_rp2k_root

        root = find_rp2k_root(data)
        marker = synthetic_marker(root)
        if marker is not None:  # a stand-in written by advrp2k: never labelled as RP2K
            name = marker.get("dataset", "rp2k_synth")
            desc = f"{marker.get('description', 'advrp2k stand-in')} (SYNTHETIC): not RP2K images"
            return DataSource(name, root, True, desc, self.default_image_size)
        return DataSource("rp2k", root, False, "RP2K release (real data)", self.default_image_size)


#: Written by advrp2k's generators beside all/: the data is synthetic, whatever the option used to load it.
MARKER = "ADVRP2K_SYNTHETIC.json"


def synthetic_marker(root: Path) -> dict | None:
    import json

    path = Path(root) / MARKER
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return {"description": "advrp2k stand-in (unreadable marker)"}


def write_marker(root: Path, dataset: str, description: str, **config) -> None:
    from advrp2k.core.io import write_json

    write_json(Path(root) / MARKER, {"dataset": dataset, "description": description, **config})


def locate_data(dataset: str | None, data: str | Path | None, progress=None) -> DataSource:
    """Pick the dataset plugin (``rp2k`` when ``data`` is given, else ``rp2k_synth``) and locate
    its folder (a stand-in is written on first use). A plugin written before ``locate`` was named
    may still call the method ``prepare``."""
    name = dataset or ("rp2k" if data is not None else "rp2k_synth")
    plugin = DATASETS.get(name)()
    return (plugin.locate if hasattr(plugin, "locate") else plugin.prepare)(data, progress=progress)
