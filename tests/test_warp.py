"""The BLAS-free perspective warp (advrp2k.core.warp): torchvision's semantics, exact corners, and
no BLAS or LAPACK call anywhere in the training augmentation or the shelf corruption, since those
vendor libraries pick kernels by CPU and made the augmented model differ between machines."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.transforms.functional import InterpolationMode
from torchvision.transforms.functional import perspective as torchvision_perspective

from advrp2k.core import shelf, warp
from advrp2k.train.augment import augment_batch

VENDOR_LIBRARY_OPS = ("mm", "bmm", "addmm", "baddbmm", "matmul", "mv", "dot", "linalg_lstsq", "linalg_solve",
                      "linalg_solve_ex", "linalg_lu_factor_ex", "_linalg_solve_ex")


class _OpNames(TorchDispatchMode):
    """Records the name of every ATen operation dispatched inside the block."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func._schema.name.split("::")[-1])
        return func(*args, **(kwargs or {}))


def _vendor_calls(fn) -> set:
    with _OpNames() as ops:
        fn()
    return {name for name in ops.names if name in VENDOR_LIBRARY_OPS}


def _corners(size, generator, reach):
    start = [[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]]
    end = [[min(max(round(c + (2 * torch.rand((), generator=generator).item() - 1) * reach), 0), size - 1)
            for c in corner] for corner in start]
    return start, end


@pytest.mark.parametrize("fill", [None, [0.5, 0.25, 0.75]])
def test_warp_matches_torchvision(fill):
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.rand(3, 24, 24, generator=g)
        start, end = _corners(24, g, 4)
        ours = warp.perspective(x, start, end, fill=fill)
        theirs = torchvision_perspective(x, start, end, interpolation=InterpolationMode.BILINEAR, fill=fill)
        assert ours.shape == x.shape and ours.dtype == x.dtype
        assert (ours - theirs).abs().max() < 5e-5


def test_homography_maps_each_end_corner_to_its_start_corner():
    start, end = [[0, 0], [31, 0], [31, 31], [0, 31]], [[3, 1], [29, 4], [30, 27], [2, 30]]
    a, b, c, d, e, f, g, h = warp.homography(start, end)
    for (sx, sy), (ex, ey) in zip(start, end):
        den = g * ex + h * ey + 1
        assert (a * ex + b * ey + c) / den == pytest.approx(sx, abs=1e-9)
        assert (d * ex + e * ey + f) / den == pytest.approx(sy, abs=1e-9)


def test_degenerate_corners_are_refused():
    with pytest.raises(ValueError, match="degenerate"):
        warp.homography([[0, 0], [1, 0], [2, 0], [3, 0]], [[0, 0], [1, 0], [2, 0], [3, 0]])


def test_the_augmentation_and_the_shelf_warp_call_no_blas_or_lapack():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    start, end = _corners(32, torch.Generator().manual_seed(2), 5)
    # the detector sees torchvision's lstsq and bmm, so an empty set below is a real finding
    assert _vendor_calls(lambda: torchvision_perspective(x[0], start, end)) >= {"linalg_lstsq", "bmm"}
    assert _vendor_calls(lambda: augment_batch(x, "paper", torch.Generator().manual_seed(3))) == set()
    assert _vendor_calls(lambda: shelf.perspective(x, [0, 1, 2, 3], 5)) == set()


def test_the_augmentation_is_the_same_bits_twice():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    once = augment_batch(x, "paper", torch.Generator().manual_seed(5))
    again = augment_batch(x, "paper", torch.Generator().manual_seed(5))
    assert torch.equal(once, again) and not torch.equal(once, x)
