"""Speed of advrp2k's PGD evaluation against its peers, measured in one run.

Prints ratios, never absolute targets:
  (a) our PGD-10 robust-accuracy evaluation over torchattacks' PGD-10 loop, on the same model,
      data and eps (medians of per-pair ratios over interleaved repetitions), for a standard
      and a Madry model, with both robust accuracies;
  (b) our PGD step time over the floor: k x (forward + input gradient) of a plain autograd loop
      on the same batch (no early exit, so the same work);
  (c) counts from instrumentation that does not trust our bookkeeping: weight-gradient hook
      calls during attacks, and forwarded rows that lie in the eps-ball of a clean-misclassified
      test image;
  (d) end to end: the whole ``advrp2k eval`` of a cached model (process start, data loading,
      clean pass, PGD-20 at 4/255 and 8/255, every integrity check, the entry written) over a
      process that loads the same model and test set and runs torchattacks' PGD-20 loop at
      both eps (process start included on both sides; medians of interleaved repetitions).

Usage: python benchmarks/eval_speed.py [--reps 5] [--eps 8/255] [--device cpu|cuda] [--n 438]
Models come from the cache (trained with the quick protocol on the embedded default when absent).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from advrp2k import frozen_eval, parse_eps
from advrp2k.eval.evaluator import AttackSpec, evaluate
from advrp2k.models.factory import resolve_device
from advrp2k.jobs.run import Job, default_eval_batch_size, get_model, load_job_data
from advrp2k.jobs.protocols import get_protocol
from advrp2k.data import load_split


def load_models(device):
    job = Job(defense="standard", protocol=get_protocol("quick"))
    prep = load_job_data(job)
    std = get_model(job, prep, device).model
    job_m = Job(defense="madry", protocol=get_protocol("quick"), eps=parse_eps("8/255"))
    madry = get_model(job_m, prep, device).model
    x, y = load_split(prep.scan, "test", prep.image_size)
    return {"standard": std.to(device).eval(), "madry 8/255": madry.to(device).eval()}, x, y


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(model, x, y, eps, device, bs):
    res = evaluate(model, x, y, [AttackSpec("pgd", {"steps": 10, "step_size": 2 / 255})], [eps], device, bs,
                   sanity_checks=False)
    return res.robust_acc()[eps.label], res


def theirs(model, x, y, eps, device, bs):
    import torchattacks

    atk = torchattacks.PGD(model, eps=eps.value, alpha=2 / 255, steps=10, random_start=True)
    correct = 0
    for i in range(0, len(y), bs):
        xb, yb = x[i:i + bs].to(device).float() / 255, y[i:i + bs].to(device)
        adv = atk(xb, yb)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(y)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_ratio(model, x, y, eps, device, bs, reps):
    ratios, accs = [], []
    for _ in range(reps):  # interleaved: ours then theirs in each repetition
        t_ours, (acc_ours, _) = timed(lambda: (ours(model, x, y, eps, device, bs), sync(device))[0])
        t_theirs, acc_theirs = timed(lambda: (theirs(model, x, y, eps, device, bs), sync(device))[0])
        ratios.append(t_ours / t_theirs)
        accs.append((acc_ours, acc_theirs))
    return statistics.median(ratios), accs


def step_floor_ratio(model, x, y, eps, device, steps=10, reps=5):
    from advrp2k import create_attack

    xb, yb = x[:256].to(device).float() / 255, y[:256].to(device)
    attack = create_attack("pgd", eps, steps=steps, early_stop=False)
    ratios = []
    for _ in range(reps):
        t_ours, _ = timed(lambda: (attack(model, xb, yb), sync(device)))
        def floor():
            with frozen_eval(model), torch.enable_grad():
                for _ in range(steps):
                    xa = xb.clone().requires_grad_(True)
                    torch.autograd.grad(torch.nn.functional.cross_entropy(model(xa), yb, reduction="sum"), xa)
            sync(device)
        t_floor, _ = timed(floor)
        ratios.append(t_ours / t_floor)
    return statistics.median(ratios)


def instrumented_counts(model, x, y, eps, device, bs):
    """Count weight-gradient hook calls and forwarded rows near clean-misclassified images."""
    with torch.no_grad():
        clean = torch.cat([model(x[i:i + bs].to(device).float() / 255).argmax(1).cpu() for i in range(0, len(y), bs)])
    wrong_imgs = (x[clean != y].float() / 255).flatten(1).to(device)
    counters = {"weight_grad_hook_calls": 0, "rows_forwarded_near_misclassified": 0, "rows_forwarded": 0}
    hooks = [p.register_hook(lambda g: counters.__setitem__("weight_grad_hook_calls",
                                                             counters["weight_grad_hook_calls"] + 1))
             for p in model.parameters()]

    def count_rows(_module, inputs):
        rows = inputs[0].detach().flatten(1)
        counters["rows_forwarded"] += len(rows)
        if len(wrong_imgs):
            d = (rows[:, None, :] - wrong_imgs[None]).abs().amax(2).amin(1)
            counters["rows_forwarded_near_misclassified"] += int((d <= eps.value + 1e-6).sum())

    pre = model.register_forward_pre_hook(count_rows)
    res = evaluate(model, x, y, [AttackSpec("pgd", {"steps": 10})], [eps], device, bs, sanity_checks=False)
    pre.remove()
    for h in hooks:
        h.remove()
    # the clean pass forwards every test image once, misclassified ones included: subtract it
    counters["rows_forwarded_near_misclassified"] -= int((clean != y).sum())
    counters["clean_misclassified"] = int((clean != y).sum())
    counters["attack_backwards_reported"] = res.counts["attack_backwards"]
    return counters


THEIRS_SCRIPT = """
import sys, torch, torchattacks
from advrp2k import parse_eps
from advrp2k.data import load_split
from advrp2k.jobs.run import Job, get_model, load_job_data
from advrp2k.jobs.protocols import get_protocol
defense, eps_arg, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
job = Job(defense=defense, protocol=get_protocol("quick"), eps=parse_eps(eps_arg) if eps_arg != "-" else None)
prep = load_job_data(job)
model = get_model(job, prep, torch.device("cpu")).model.eval()
x, y = load_split(prep.scan, "test", prep.image_size)
for eps in (4 / 255, 8 / 255):
    atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 20, steps=20, random_start=True)
    correct = 0
    for i in range(0, len(y), bs):
        xb, yb = x[i:i + bs].float() / 255, y[i:i + bs]
        adv = atk(xb, yb)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    print(eps, correct / len(y))
"""


def end_to_end(defense: str, eps: str | None, bs: int, reps: int) -> float:
    """Median over interleaved reps of: wall time of ``advrp2k eval`` / wall time of the torchattacks process."""
    env = {**os.environ, "ADVRP2K_NO_PROGRESS": "1"}
    ratios = []
    with tempfile.TemporaryDirectory() as lb:
        ours_cmd = [sys.executable, "-m", "advrp2k", "eval", "--defense", defense, "--leaderboard", lb, "--restart",
                    "--batch-size", str(bs)] + (["--eps", eps] if eps else [])
        theirs_cmd = [sys.executable, "-c", THEIRS_SCRIPT, defense, eps or "-", str(bs)]
        for _ in range(reps):
            t_ours, _ = timed(lambda: subprocess.run(ours_cmd, env=env, check=True, capture_output=True))
            t_theirs, _ = timed(lambda: subprocess.run(theirs_cmd, env=env, check=True, capture_output=True))
            ratios.append(t_ours / t_theirs)
    return statistics.median(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None, help="both peers; default advrp2k's for the device")
    ap.add_argument("--n", type=int, default=None, help="first N test images (default all)")
    args = ap.parse_args()
    device, eps = resolve_device(args.device), parse_eps(args.eps)
    args.batch_size = args.batch_size or default_eval_batch_size(device)
    models, x, y = load_models(device)
    if args.n:
        x, y = x[:args.n], y[:args.n]
    print(f"device {device}, {len(y)} test images, eps {eps.label}, PGD-10 step 2/255, batch {args.batch_size} "
          f"for both, {args.reps} interleaved reps\n")
    rows = []
    for name, model in models.items():
        ratio, accs = bench_ratio(model, x, y, eps, device, args.batch_size, args.reps)
        gap = max(a - b for a, b in accs)
        rows.append((name, ratio, accs[0][0], accs[0][1], gap))
    floor = step_floor_ratio(models["madry 8/255"], x, y, eps, device, reps=args.reps)
    counts = instrumented_counts(models["madry 8/255"], x, y, eps, device, args.batch_size)
    print("| measure | value |")
    print("| --- | ---: |")
    for name, ratio, a_ours, a_theirs, gap in rows:
        print(f"| (a) time ours / torchattacks, {name} model | {ratio:.3f} |")
        print(f"| (a) robust acc ours vs torchattacks, {name} (max gap over reps) | "
              f"{100 * a_ours:.2f} % vs {100 * a_theirs:.2f} % ({100 * gap:+.2f}) |")
    print(f"| (b) PGD step time / floor (k x forward+input-grad), madry model | {floor:.3f} |")
    print(f"| (c) weight-gradient hook calls during the evaluation | {counts['weight_grad_hook_calls']} |")
    print(f"| (c) attack forwards of rows within eps of a clean-misclassified image "
          f"({counts['clean_misclassified']} such images) | {counts['rows_forwarded_near_misclassified']} |")
    if device.type == "cpu" and not args.n:
        for name, defense, eps_arg in (("standard", "standard", None), ("madry 8/255", "madry", "8/255")):
            ratio = end_to_end(defense, eps_arg, args.batch_size, args.reps)
            print(f"| (d) whole `advrp2k eval` (checks included) / torchattacks PGD-20 process, {name} model | "
                  f"{ratio:.3f} |")


if __name__ == "__main__":
    main()
