import hashlib

from advrp2k.data.synth import PRODUCT_TYPES, SHAPES, SynthConfig, generate, make_catalogue


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic(tmp_path):
    cfg = SynthConfig(n_lines=3, max_train=6, min_train=3, min_test=1)
    assert _digest(generate(tmp_path / "a", cfg)) == _digest(generate(tmp_path / "b", cfg))


def test_catalogue_structure():
    cat = make_catalogue(SynthConfig())
    assert {s.product_type for s in cat} == set(range(len(PRODUCT_TYPES)))
    assert {s.shape for s in cat} == set(range(len(SHAPES)))
    assert len({s.name for s in cat}) == len(cat)
    counts = sorted(s.n_train for s in cat)
    assert counts[-1] >= 5 * counts[0]  # long-tailed
    lines = {}
    for s in cat:
        lines.setdefault(s.line, []).append(s)
    for sibs in lines.values():  # siblings share type and shape; differ in exactly one detail
        assert len({(s.product_type, s.shape, s.brand) for s in sibs}) == 1
        assert len({(s.flavour, s.size) for s in sibs}) == len(sibs)
