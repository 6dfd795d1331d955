"""attacks/ and defenses/ install under the advrp2k namespace, in a wheel and in an editable install."""
import subprocess
import sys
import zipfile

import advrp2k.attacks.pgd
import advrp2k.defenses.madry


def test_editable_or_source_install_imports_plugins():
    assert advrp2k.attacks.pgd.PGD.__module__ == "advrp2k.attacks.pgd"
    assert advrp2k.defenses.madry.MadryAT.paper_id == "Madry2018Towards"


def test_wheel_puts_plugins_under_advrp2k(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("advrp2k-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "advrp2k/attacks/pgd.py" in names and "advrp2k/defenses/madry.py" in names
    assert not any(n.startswith(("attacks/", "defenses/", "tests/")) for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
