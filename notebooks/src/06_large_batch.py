# %% [markdown]
# # 6. Large batches: convergence against speed
#
# Lessons 4 and 5 made each step faster with more workers. But with data parallelism the global
# batch grows with the workers ($B = p \times b$), and a bigger batch is not a free lunch: it
# takes fewer steps to reach a given accuracy only up to a point. Past it, extra samples per step
# buy nothing, and every worker added only adds communication. So the real question is: **how many
# workers, at which batch, reach a target accuracy soonest?**
#
# What the literature found, and what this lesson reproduces on a laptop:
#
# - Shallue et al. (2019, 168k models): steps-to-target against batch size has **three regimes**:
#   *perfect scaling* (double the batch, halve the steps), *diminishing returns*, and *maximal
#   data parallelism* (steps stop falling). The learning rate must be re-tuned per batch size, or
#   the curve means nothing.
# - McCandlish et al. (2018): the curve follows $S(B) = S_\text{min}(1 + B_\text{crit}/B)$, and the
#   critical batch $B_\text{crit}$ is predicted by the **gradient noise scale** $B_\text{simple}$
#   that lesson 5 measured during training.
# - Goyal et al. (2017): with the linear scaling rule ($\eta \propto B$) and a few epochs of warmup,
#   ImageNet trains at batch 8k without losing accuracy; LARS/LAMB (layer-wise adaptive rates)
#   push further. Keskar et al. (2017): large batches tend to find *sharper* minima.
#
# `python -m minidl.study batch-scaling` measures all of this for one model; `python -m minidl.study
# plan` combines it with the simulator's allreduce times to predict time-to-accuracy on a cluster.

# %%
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

import collectives
from minidl import lessons

work = Path(tempfile.mkdtemp(prefix="lesson6-"))


def study(*args, timeout=300):
    """Run python -m minidl.study with these arguments and return what it printed."""
    out = subprocess.run([sys.executable, "-m", "minidl.study", *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return out.stdout

# %% [markdown]
# ## Steps to target against batch size
#
# The `--quick` configuration (under a minute): the digits MLP at global batches 16, 64 and 256,
# a small learning-rate grid per batch (the best one kept), one seed, for three recipes: plain SGD,
# momentum SGD with the linear scaling rule and warmup, and LARS. The default configuration
# (`--out study/` without `--quick`, about 5 minutes) uses batches 8 to 1024 and three seeds, and
# draws the regimes far more clearly; the quick one shows the shape.

# %%
print(study("batch-scaling", "--quick", "--recipes", "sgd,momentum,lars", "--out", str(work / "study"),
            "--no-progress"))
display(Image(filename=str(work / "study" / "steps_vs_batch.png"), width=950))

# %% [markdown]
# Left: steps to the target accuracy per batch (best learning rate), with the fitted
# $S_\text{min}(1 + B_\text{crit}/B)$ per recipe, the regimes found from the data, and the measured
# noise scale $B_\text{simple}$ as the predicted critical batch. Right: the same runs as steps
# against samples processed, $E = S \cdot B$: the hyperbola $(S/S_\text{min} - 1)(E/E_\text{min} -
# 1) = 1$ says you can trade steps for samples, but never get below $S_\text{min}$ steps or
# $E_\text{min}$ samples.
#
# ## What large batches cost in accuracy, and what the recipes recover

# %%
display(Image(filename=str(work / "study" / "accuracy_vs_batch.png"), width=700))
display(Image(filename=str(work / "study" / "sharpness_vs_batch.png"), width=700))

# %% [markdown]
# Sharpness is the largest eigenvalue of the training loss's Hessian at the end of training, found
# by power iteration on Hessian-vector products (lesson 1's exercise). The study's `report.md`
# says all of it in words:

# %%
display(Markdown((work / "study" / "report.md").read_text()))

# %% [markdown]
# ## The planner: time to accuracy on a cluster
#
# `plan` predicts, for 1 to 1024 workers and each allreduce algorithm: the compute time per step
# (measured here, for 32 samples per worker), the gradient's allreduce in the trainer's buckets
# timed by `collectives.sim` on an InfiniBand EDR network, the part of it that overlaps with
# backward, and the steps to target at the global batch, from the study above. Time to target is
# steps times step time; it picks the best configuration and says why. Left below: the prediction
# per algorithm; right: the steps model behind it. Where the global batch passes the critical
# batch, steps stop falling, and from there every added worker only adds communication.

# %%
print(study("plan", "--study", str(work / "study"), "--preset", "ib-edr", "--workers", "1..1024",
            "--out", str(work / "plan")))
plan = json.loads((work / "plan" / "plan.json").read_text())

# %%
rows = plan["predictions"]
s_min, b_crit = plan["steps_model"]["s_min"], plan["steps_model"]["b_crit"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for i, name in enumerate(sorted({r["algorithm"] for r in rows})):
    mine = sorted((r["workers"], r["time_to_target"]) for r in rows if r["algorithm"] == name)
    ax1.loglog(*zip(*mine), "o-", ms=3, color=f"C{i}", label=name)
ax1.set_xlabel("workers (32 samples each per step)")
ax1.set_ylabel("predicted time to target accuracy (s)")
ax1.set_title("time to target on InfiniBand EDR (simulated)", fontsize=10)
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3, which="both")
batches = np.logspace(0, np.log10(32 * 1024), 100)
ax2.loglog(batches, s_min * (1 + b_crit / batches), color="k", label=f"S(B) = {s_min:.0f} (1 + {b_crit:.0f} / B)")
ax2.axvline(b_crit, color="C3", ls="--", lw=1, label=f"critical batch {b_crit:.0f}")
ax2.axhline(s_min, color="gray", ls=":", lw=1, label=f"S_min = {s_min:.0f} steps")
ax2.set_xlabel("global batch B (samples)")
ax2.set_ylabel("steps to target")
ax2.set_title("the steps model the planner uses (fitted to the study)", fontsize=10)
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3, which="both")
fig.tight_layout()
plt.show()

# %% [markdown]
# ---
# ## Exercises
#
# (Reference solutions, for instructors: `notebooks/solutions/s06_large_batch.py`.)
#
# **Exercise 1: the steps model.** Write `steps_to_target(batch, s_min, b_crit)`, McCandlish et al.'s
# prediction of the steps needed at batch $B$.

# %%
def steps_to_target(batch, s_min, b_crit):
    raise NotImplementedError("exercise 1")


lessons.check_steps_to_target(steps_to_target)

# %% [markdown]
# **Exercise 2: the best worker count for a different link.** The cluster above had InfiniBand.
# Predict the best number of workers on 1 Gb/s Ethernet with 50 us latency, before asking the
# planner. Write `best_workers(workers, per_worker_batch, s_min, b_crit, step_time)`, where
# `step_time(p)` is the seconds of one step on $p$ workers; the check tries it on three links.
# Then the next cell builds `step_time` for the Ethernet link from the planner's own measurements
# (its compute per step, and the ring's closed-form cost for the model's gradient, without overlap)
# and compares your answer with the planner's.

# %%
def best_workers(workers, per_worker_batch, s_min, b_crit, step_time):
    raise NotImplementedError("exercise 2")


lessons.check_best_workers(best_workers)

# %%
compute, nbytes = plan["compute"], plan["compute"]["gradient_bytes"]
alpha, beta = 50e-6, 1 / 125e6  # 1 Gb/s = 125 MB/s
ring = collectives.ALGORITHMS["ring"]


def ethernet_step(p):
    comm = ring.cost(p, nbytes, 4).time(alpha, beta, 1 / 4e9)  # reductions at 4 GB/s, as the planner's cpu device
    return compute["forward"] + compute["backward"] + compute["optimizer"] + comm


workers = [2**k for k in range(11)]
try:
    mine = best_workers(workers, compute["batch"], s_min, b_crit, ethernet_step)
    print(f"your prediction for 1 Gb/s Ethernet: {mine} workers")
except NotImplementedError:
    print("write best_workers above to see your prediction")
print(study("plan", "--study", str(work / "study"), "--link", "1Gbps,50us", "--algorithms", "ring",
            "--workers", "1..1024"))

# %% [markdown]
# **Exercise 3 (no check).** The planner overlaps the allreduce with backward; your `ethernet_step`
# did not. Where would overlap move the best worker count, and by how much can it at most shorten a
# step? Re-run the study without `--quick` and see whether the best configuration changes.
