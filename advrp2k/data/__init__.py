"""RP2K data: the release scanner and loader, and the synthetic stand-in."""
from advrp2k.data.rp2k import Rp2kScan, find_rp2k_root, load_split, scan_rp2k  # noqa: F401
from advrp2k.data.source import DataSource, locate_data  # noqa: F401
