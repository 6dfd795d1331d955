"""robustbench 1.1.1 and pyautoattack as installed from PyPI, imported deliberately."""

import pytest
from helpers import run_python as _python


def test_import_advrp2k_does_not_import_robustbench_or_autoattack():
    out = _python("import sys, advrp2k; advrp2k.load_plugins(); "
                  "print(sorted(m for m in ('robustbench', 'autoattack', 'pyautoattack') if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(_python("import robustbench").returncode == 0, reason="this environment's robustbench imports as is")
def test_robustbench_imports_through_compat_and_leaves_no_shim():
    out = _python("import sys; from advrp2k.core.compat import import_robustbench\n"
                  "rb = import_robustbench()\n"
                  "from robustbench.utils import clean_accuracy\n"
                  "from autoattack import AutoAttack\n"
                  "import autoattack.state\n"
                  "print('ok', 'pkg_resources' in sys.modules and getattr(sys.modules['pkg_resources'], '__advrp2k_shim__', False))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok False"


def test_robustbench_clean_accuracy_agrees_with_ours():
    """Cross-check our clean pass against robustbench's own helper."""
    import torch

    from advrp2k.core.compat import import_robustbench
    from advrp2k.eval.evaluator import clean_pass
    from conftest import tiny_cnn

    import_robustbench()
    from robustbench.utils import clean_accuracy

    torch.manual_seed(0)
    model, x, y = tiny_cnn().eval(), torch.rand(40, 3, 8, 8), torch.randint(0, 4, (40,))
    theirs = clean_accuracy(model, x, y, batch_size=16, device=torch.device("cpu"))
    ours = clean_pass(model, x, y, torch.device("cpu"), 16)[0].float().mean().item()
    assert ours == pytest.approx(theirs)
