"""Cost of each threat model's evaluation relative to the l_inf PGD-20 evaluation, on the same
model, in one run.

Each threat model is evaluated as ``advrp2k eval --threat NAME`` evaluates it (its default
suite at its default budgets, every integrity check; ``--ranking``: its ranking suite instead),
through ``advrp2k.benchmark`` on one cached quick-protocol model of the embedded stand-in. The
reference is the l_inf evaluation with PGD-20 at 4/255 and 8/255. Escalation is off by default
(``--escalate`` turns it on): what it runs depends on what the checks find, so it would make the
ratios depend on the model rather than on the threat model. Per threat model it prints wall
seconds and the forward and input-gradient passes through the model (counted by hooks on the
model, clean pass and checks included), each as a ratio to the reference.

    python3 benchmarks/threat_costs.py [--defense standard] [--n-examples N] [--threats l2,switch,patch,shelf]

Numbers come from the synthetic stand-in (``rp2k_synth``), not from RP2K.
"""
from __future__ import annotations

import argparse
import time

import torch

import advrp2k
from advrp2k.core.eps import parse_eps
from advrp2k.core.threat import THREAT_MODELS, parse_threats
from advrp2k.eval.engine import counted_passes
from advrp2k.jobs.job import Job, load_job_data
from advrp2k.jobs.model_store import get_model
from advrp2k.jobs.protocols import get_protocol


def cached_model(defense: str, eps: str | None) -> torch.nn.Module:
    """The quick protocol's model of ``defense`` on the embedded stand-in (trained once, then cached)."""
    job = Job(defense=defense, eps=parse_eps(eps) if eps else None, protocol=get_protocol("quick"), device="cpu")
    return get_model(job, load_job_data(job), torch.device("cpu")).model.eval()


def measure(model: torch.nn.Module, threat: str, attacks, n_examples: int | None, escalate: bool) -> dict:
    """Wall seconds, passes and the worst-case robust accuracy of one threat model's evaluation."""
    counts = {"attack_forwards": 0, "attack_backwards": 0}
    start = time.perf_counter()
    with counted_passes(model, counts):
        result = advrp2k.benchmark(model, classes="dataset", threat=threat, attacks=attacks, n_examples=n_examples,
                                   device="cpu", escalate=escalate, name=f"cost_{threat}")
    seconds = time.perf_counter() - start
    entry = result.entry
    suite = ",".join(dict.fromkeys(a["name"] for a in entry["attacks"]))  # the suite as the entry records it
    return {"threat": threat, "seconds": seconds, "forwards": counts["attack_forwards"],
            "backwards": counts["attack_backwards"], "suite": suite, "budgets": ",".join(entry["robust_acc"]),
            "worst": list(entry["robust_acc"].values())[-1], "n": entry["n_examples"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defense", default="standard", choices=["standard", "madry"],
                        help="the model: standard, or madry (at --eps)")
    parser.add_argument("--eps", default="8/255", help="madry's training budget")
    parser.add_argument("--threats", default=",".join(t for t in THREAT_MODELS if t != "linf"))
    parser.add_argument("--n-examples", type=int, default=None, help="the first N test images (default: all)")
    parser.add_argument("--ranking", action="store_true", help="each threat model's ranking suite instead of its default")
    parser.add_argument("--escalate", action="store_true", help="run the attacks the checks call for, as eval does")
    args = parser.parse_args()
    threats = [t.name for t in parse_threats(args.threats) if t.name != "linf"]
    model = cached_model(args.defense, args.eps if args.defense == "madry" else None)
    print(f"model: {args.defense}{' ' + args.eps if args.defense == 'madry' else ''} (smallcnn, quick protocol, "
          f"embedded stand-in rp2k_synth: synthetic); {torch.get_num_threads()} thread(s); escalation "
          f"{'on' if args.escalate else 'off'}")
    measure(model, "linf", ["pgd"], 4, False)  # warm-up: the data's decoding and caches are not any threat's cost
    reference = measure(model, "linf", ["pgd"], args.n_examples, args.escalate)
    rows = [reference] + [measure(model, t, "ranking" if args.ranking else None, args.n_examples, args.escalate)
                          for t in threats]
    ref_passes = reference["forwards"] + reference["backwards"]
    print(f"\n{'threat':<8}{'suite':<22}{'budgets':<32}{'images':>7}{'seconds':>9}{'x time':>8}"
          f"{'forwards':>11}{'backwards':>11}{'x passes':>9}{'worst':>8}")
    for r in rows:
        passes = r["forwards"] + r["backwards"]
        print(f"{r['threat']:<8}{r['suite']:<22}{r['budgets']:<32}{r['n']:>7}{r['seconds']:>9.1f}"
              f"{r['seconds'] / reference['seconds']:>8.2f}{r['forwards']:>11,}{r['backwards']:>11,}"
              f"{passes / ref_passes:>9.2f}{r['worst']:>8.2%}")
    print("\nx time and x passes: relative to the first row (l_inf, PGD-20 at 4/255 and 8/255); worst: robust "
          "accuracy at the largest budget. Synthetic data, not RP2K results.")


if __name__ == "__main__":
    main()
