"""Dataset plugins: each prepares a folder in the RP2K release layout that one loader reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._registry import DATASETS, register_dataset
from ..errors import DataError


@dataclass
class DataSource:
    """A prepared dataset: where it is on disk and what it is."""

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

    def prepare(self, data: str | Path | None, progress=None) -> DataSource:
        if data is None:
            raise DataError("dataset rp2k needs --data PATH pointing at your RP2K download "
                            "(or leave out --dataset to use the embedded synthetic default)")
        from .rp2k import find_rp2k_root

        root = find_rp2k_root(data)
        return DataSource("rp2k", root, False, "RP2K release (real data)", self.default_image_size)


def prepare_data(dataset: str | None, data: str | Path | None, progress=None) -> DataSource:
    """Pick the dataset plugin (``rp2k`` when ``data`` is given, else ``rp2k_synth``) and prepare it."""
    name = dataset or ("rp2k" if data is not None else "rp2k_synth")
    return DATASETS.get(name)().prepare(data, progress=progress)
