"""Many classes: AutoAttack standard against a suite with MALT's target choice, on a 2,388-SKU
stand-in with a Madry model, in one run.

For every clean-correct test image (the whole test split), each attack runs standalone, as the
ranking protocol runs them (with ``--cascade``, each attack of a suite runs only on the images the
earlier ones left unfooled, as AutoAttack runs its own attacks and ``advrp2k eval --cascade`` runs
a suite): (a) AutoAttack standard (APGD-CE, APGD-T on the top 9 logits,
FAB-T, Square 5,000 queries; its own cascade inside); (b) PGD-20 + APGD-CE + MALT, and the
variants named with ``--suite``. It prints forward and input-gradient passes per attacked image
(counted by hooks on the model, whatever an attack reports), wall time, robust accuracy, and
the examples each fools that the other does not. Targets: (b) costs at most 0.5x of (a), and
its robust accuracy is not higher than (a)'s by more than one example.

    python3 benchmarks/many_class_eval.py [--skus 2388] [--per-sku 12,3] [--size 16] [--eps 8/255] [--cascade]
    python3 benchmarks/many_class_eval.py --embedded [--cascade]   # the embedded default's 59 SKUs

The stand-in (the one `advrp2k study skus` writes: the same images for every SKU) and the model (Madry 8/255, quick
protocol) are cached under $ADVRP2K_HOME; numbers are synthetic, not RP2K results.
"""
from __future__ import annotations

import argparse
import time

import torch

from advrp2k import create_attack, frozen_eval, parse_eps
from advrp2k.data import load_split
from advrp2k.eval.engine import counted_passes
from advrp2k.eval.siblings import sibling_table
from advrp2k.jobs.job import Job, load_job_data
from advrp2k.jobs.model_store import get_model
from advrp2k.jobs.protocols import get_protocol
from advrp2k.jobs.study import StudyPlan, stand_in_for

SUITES = {
    "autoattack": [("autoattack", {})],
    "pgd+apgd_ce+malt": [("pgd", {"steps": 20}), ("apgd_ce", {}), ("malt", {})],
    "pgd+malt": [("pgd", {"steps": 20}), ("malt", {})],
    "pgd+apgd_ce+malt9": [("pgd", {"steps": 20}), ("apgd_ce", {}), ("malt", {"targets": 9})],
    "pgd+malt20": [("pgd", {"steps": 20}), ("malt", {"candidates": 20})],
    "pgd+malt20x1": [("pgd", {"steps": 20}), ("malt", {"candidates": 20, "targets": 1})],
    # with AutoAttack's gradient-free member (Square, 5,000 queries as in AutoAttack standard)
    "pgd+apgd_ce+malt+square": [("pgd", {"steps": 20}), ("apgd_ce", {}), ("malt", {}), ("square", {"queries": 5000})],
}


def run_attack(name, options, model, x, y, eps, batch, only=None, siblings=None) -> tuple[torch.Tensor, dict, float]:
    """Fooled mask over all of ``x``, pass counts and wall seconds of one attack, on every image or
    on the images ``only`` (a bool mask) selects; ``siblings`` (classes, classes) is offered to an
    attack that uses it, as the engine offers it."""
    attack = create_attack(name, eps, **options)
    counts = {"attack_forwards": 0, "attack_backwards": 0}
    fooled = torch.zeros(len(y), dtype=torch.bool)
    chosen = torch.arange(len(y)) if only is None else only.nonzero().squeeze(1)
    start = time.perf_counter()
    with frozen_eval(model), counted_passes(model, counts):
        for idx in chosen.split(batch):
            hints = {"siblings": siblings[y[idx]]} if siblings is not None and attack.uses_siblings else {}
            result = attack(model, x[idx], y[idx], index=idx, **hints)
            for key, value in (result.extra or {}).get("counts", {}).items():  # MALT's tallies of its choices
                counts[key] = counts.get(key, 0) + value
            with torch.no_grad():
                fooled[idx] = model(result.x_adv).argmax(1) != y[idx]  # re-verified, not trusted
    return fooled, counts, time.perf_counter() - start


RP2K_TEST_IMAGES = 39_457  # the paper's Table 1


def resnet34_pass_seconds(device: torch.device, batch: int = 8) -> tuple[float, float]:
    """Seconds per image of a ResNet-34 (2,388 classes) at 224 px: a forward, and a forward with
    an input gradient, each the median of 3 timed batches after a warm-up."""
    import statistics

    from advrp2k.models.factory import create_model

    model = create_model("resnet34", 2388).to(device).eval()
    x = torch.rand(batch, 3, 224, 224, device=device)
    out = []
    for grad in (False, True):
        times = []
        for _ in range(4):
            xg = x.clone().requires_grad_(grad)
            start = time.perf_counter()
            with torch.set_grad_enabled(grad):
                logits = model(xg)
                if grad:
                    torch.autograd.grad(logits.sum(), xg)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        out.append(statistics.median(times[1:]) / batch)
    return out[0], out[1]


def projection(cost: dict, attacked: int, total: int, device) -> None:
    """Projected wall time of each suite on RP2K's whole test set with a ResNet-34 at 224 px: the
    passes per attacked image measured here, times the share of images attacked here, times the
    measured per-image pass times (a gradient pass replaces its forward)."""
    fwd_s, grad_s = resnet34_pass_seconds(device)
    share = attacked / total
    print(f"projection to RP2K's {RP2K_TEST_IMAGES:,} test images, ResNet-34 at 224 px on {device.type}: "
          f"{fwd_s * 1e3:.0f} ms per forward, {grad_s * 1e3:.0f} ms per forward+input gradient per image; "
          f"{share:.1%} of images attacked, as here")
    for suite, (fwd, bwd, _) in cost.items():
        per_img = ((fwd - bwd) * fwd_s + bwd * grad_s) / attacked
        hours = per_img * RP2K_TEST_IMAGES * share / 3600
        print(f"  {suite:<22} {hours:10.1f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=2388)
    parser.add_argument("--per-sku", default="12,3", help="train,test images per SKU")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="suites beside (a) and (b)")
    parser.add_argument("--cascade", action="store_true",
                        help="each attack of a suite runs only on the images the earlier ones left unfooled, as "
                             "AutoAttack runs its own attacks (advrp2k eval --cascade); the default runs each on every image")
    parser.add_argument("--project", action="store_true",
                        help="also time a ResNet-34 at 224 px and project each suite to RP2K's 39,457 test images")
    parser.add_argument("--embedded", action="store_true",
                        help="the embedded default (59 SKUs, 32 px) and the quick start's Madry 8/255 model instead "
                             "of a study stand-in (--skus, --per-sku and --size are then not used)")
    args = parser.parse_args()
    per_sku = tuple(int(v) for v in args.per_sku.split(","))
    if args.embedded:  # the quick start's own model: cached by `advrp2k eval --defense madry --eps 8/255`
        job = Job(defense="madry", eps=parse_eps("8/255"), protocol=get_protocol("quick"), dataset="rp2k_synth",
                  device="cpu")
    else:
        root = stand_in_for(args.skus, StudyPlan(per_sku=per_sku, image_size=args.size))  # the study's own stand-in
        job = Job(defense="madry", eps=parse_eps("8/255"), protocol=get_protocol("quick").override(image_size=args.size),
                  data=root, dataset="rp2k_synth", device="cpu")
    prep = load_job_data(job)
    model = get_model(job, prep, torch.device("cpu")).model.eval()
    x, y = load_split(prep.scan, "test", prep.image_size)
    x = x.float() / 255
    with torch.no_grad():
        correct = torch.cat([model(x[i:i + 512]).argmax(1) for i in range(0, len(y), 512)]) == y
    xs, ys = x[correct], y[correct]
    eps = parse_eps(args.eps)
    siblings = sibling_table(prep.scan.classes, prep.scan.attributes) if prep.scan.attributes else None
    print(f"{len(prep.scan.classes)} SKUs, {len(y)} test images, {prep.image_size} px; Madry 8/255 (quick "
          f"protocol): clean {correct.float().mean():.2%} ({len(ys)} attacked); eps {eps.label}; synthetic data; "
          + ("suites cascaded (each attack on the earlier ones' survivors)" if args.cascade else "each attack on every image")
          + (f"; sibling SKUs in attributes.csv for {int(siblings.any(1).sum())} of {len(siblings)} SKUs" if siblings is not None
             else "; no sibling SKUs in the data"))
    names = ["autoattack", "pgd+apgd_ce+malt"] + [s for s in (args.suite or []) if s not in ("autoattack", "pgd+apgd_ce+malt")]
    found, cost = {}, {}
    for suite in names:
        fooled = torch.zeros(len(ys), dtype=torch.bool)
        fwd = bwd = wall = 0
        for name, options in SUITES[suite]:
            only = ~fooled if args.cascade and fooled.any() else None
            f, counts, seconds = run_attack(name, options, model, xs, ys, eps, args.batch, only, siblings)
            if name == "pgd":
                pgd_cost = (counts["attack_forwards"], counts["attack_backwards"], seconds)
            fooled |= f
            fwd, bwd, wall = fwd + counts["attack_forwards"], bwd + counts["attack_backwards"], wall + seconds
            print(f"  {suite:<20} {name:<11} fooled {int(f.sum()):>5}  forwards/img {counts['attack_forwards'] / len(ys):8.1f}"
                  f"  gradients/img {counts['attack_backwards'] / len(ys):7.1f}  {seconds:7.1f} s")
            tallies = {k: v for k, v in counts.items() if not k.startswith("attack_")}
            if tallies:
                print("  " + " " * 20 + "   " + "; ".join(f"{k}: {v}" for k, v in tallies.items()))
        found[suite], cost[suite] = fooled, (fwd, bwd, wall)
        robust = (len(ys) - int(fooled.sum())) / len(y)
        print(f"{suite:<22} robust {robust:.2%}  forwards/img {fwd / len(ys):.1f}  gradients/img {bwd / len(ys):.1f}"
              f"  wall {wall:.1f} s")
    a = found["autoattack"]
    # Cost as passes, a gradient counted as two forwards (a backward costs about twice a forward).
    work = {s: c[0] + 2 * c[1] for s, c in cost.items()}
    for suite in names[1:]:
        b = found[suite]
        print(f"{suite}: fooled by AutoAttack only {int((a & ~b).sum())}, by {suite} only {int((b & ~a).sum())}, "
              f"by both {int((a & b).sum())}; union robust {(len(ys) - int((a | b).sum())) / len(y):.2%}")
        print(f"suite / autoattack cost: {work[suite] / work['autoattack']:.2f}x (passes, a gradient = 2 forwards); "
              f"wall {cost[suite][2] / cost['autoattack'][2]:.2f}x  [{suite}]")
    if args.project:
        # the ranking suite today, PGD-20 + AutoAttack: AutoAttack's passes plus PGD-20's as measured above
        cost["ranking: pgd+autoattack"] = tuple(a + p for a, p in zip(cost["autoattack"], pgd_cost))
        projection(cost, len(ys), len(y), torch.device("cpu"))

if __name__ == "__main__":
    main()
