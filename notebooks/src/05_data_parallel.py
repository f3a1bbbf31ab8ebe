# %% [markdown]
# # 5. Data-parallel training on real ranks
#
# Data parallelism: every rank holds a full copy of the model, takes its own shard of each global
# batch, computes its gradient, and then all ranks **average their gradients with an allreduce**
# so that every copy takes the same step. The result is the same update one process would make on
# the whole batch (the tests check this), computed $p$ times faster, if the communication is cheap.
#
# It is not free: every step moves the whole gradient. `minidl.distributed.DistributedDataParallel`
# does what PyTorch's does to hide it:
#
# - **buckets**: parameters are grouped into buckets of `--bucket-mb` megabytes, in the reverse
#   order backward produces their gradients;
# - **overlap**: as soon as a bucket's gradients are complete, a communication thread allreduces it
#   *while backward goes on* computing the earlier layers. Only what is still in flight when
#   backward ends, the **exposed** communication, costs step time.
#
# We launch `python -m minidl.train` on 2 ranks from the notebook (`collectives.lessons.run_ranks`,
# as in lesson 4), on an emulated slow link (`--link 2Gbps,50us`: every allreduce step is stretched
# to the time that link would take), so that communication is large enough to see.

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from collectives.lessons import run_ranks
from minidl import lessons

work = Path(tempfile.mkdtemp(prefix="lesson5-"))


def train(name, *options, ranks=2):
    """Run minidl.train on `ranks` ranks; print rank 0's report; return the per-step metrics."""
    argv = [*options, "--metrics", str(work / f"{name}.jsonl"), "--no-progress"]
    run = run_ranks(f"from minidl.train import main\nmain({argv!r})\n", ranks=ranks, timeout=170)
    print(run.outputs[0])
    lines = (work / f"{name}.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row.get("kind") == "step"]


RESNET = ["--dataset", "synthetic-images", "--model", "resnet", "--depth", "8", "--train-size", "512",
          "--batch-size", "32", "--epochs", "1", "--link", "2Gbps,50us", "--bucket-mb", "0.03"]

# %% [markdown]
# ## Overlap, on the step timeline
#
# ResNet-8 (78k parameters, about 0.3 MB of float32 gradients) in buckets of 0.03 MB, so there are
# several buckets to overlap. `--profile` draws one step per rank: the compute lane (forward,
# backward, optimizer) above the communication lane (one bar per bucket's allreduce).

# %%
overlap_on = train("overlap", *RESNET, "--profile", str(work / "step.png"), "--profile-step", "4")
display(Image(filename=str(work / "step.png"), width=900))

# %% [markdown]
# The buckets' allreduces run under backward: the last layers' gradients are ready first and
# leave while the earlier layers are still being differentiated. Only the last bucket (the first
# layers, whose gradients come last) sticks out past the end of backward, in red. Now the same
# run with `--no-overlap`, where all buckets are reduced after backward:

# %%
overlap_off = train("no_overlap", *RESNET, "--no-overlap")

# %%
def breakdown(rows):
    """Median seconds per step of each phase, after the first (warm-up) step."""
    keys = ("forward", "backward", "exposed_comm", "optimizer")
    return {k: float(np.median([r[k] for r in rows[1:]])) for k in keys}, float(np.median([r["comm"] for r in rows[1:]]))

colors = {"forward": "#4C72B0", "backward": "#55A868", "exposed_comm": "#C44E52", "optimizer": "#8172B2"}
fig, ax = plt.subplots(figsize=(9, 2.8))
for y, (label, rows) in enumerate([("overlap off", overlap_off), ("overlap on", overlap_on)]):
    phases, comm = breakdown(rows)
    left = 0.0
    for k, v in phases.items():
        ax.barh(y, v * 1e3, left=left, color=colors[k], edgecolor="k", lw=0.3, label=k.replace("_", " ") if y == 0 else None)
        left += v * 1e3
    hidden = max(0.0, 1 - phases["exposed_comm"] / comm) if comm > 0 else float("nan")
    ax.text(left + 5, y, f"allreduce {comm * 1e3:.0f} ms, {hidden:.0%} hidden", va="center", fontsize=9)
ax.set_yticks([0, 1])
ax.set_yticklabels(["overlap off", "overlap on"])
ax.set_xlabel("median time per training step (ms)")
ax.set_xlim(0, ax.get_xlim()[1] * 1.35)
ax.set_title("ResNet-8, 2 ranks, 2 Gb/s emulated link, 0.03 MB buckets")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize=8, frameon=False)
fig.tight_layout()
plt.show()

# %% [markdown]
# Two things to notice. With overlap on, most of the communication is hidden: the red bar, the
# exposed part, is short. But hiding is not free here: each allreduce takes *longer* with overlap
# on than off, and backward does too, because on this CPU the communication thread shares the two
# cores, and Python's global interpreter lock, with backward. So on a small, busy CPU machine the
# step may be little or no shorter. On a GPU, computation and communication use different engines
# and most of this cost vanishes, which is why every large-scale framework overlaps. What counts
# in the end is the step time, and that is what the bars compare.
#
# ## A slower link
#
# Overlap can hide communication only up to the length of backward. On a 10 Mb/s link the
# allreduces outlast backward and the exposed part grows, whatever the buckets:

# %%
slow = train("slow", *[o if o != "2Gbps,50us" else "10Mbps,50us" for o in RESNET])
phases, comm = breakdown(slow)
print(f"10 Mb/s: allreduce {comm * 1e3:.0f} ms per step, backward {phases['backward'] * 1e3:.0f} ms, "
      f"exposed {phases['exposed_comm'] * 1e3:.0f} ms")

# %% [markdown]
# ## The gradient noise scale
#
# How large can the global batch grow before bigger batches stop helping? McCandlish et al. (2018)
# answer with the *gradient noise scale* $B_\text{simple} = \mathrm{tr}(\Sigma)/|G|^2$: the ratio of
# the per-sample gradient variance to the squared true gradient. Batches much smaller than
# $B_\text{simple}$ are noise-dominated (doubling the batch halves the steps needed); much larger
# ones waste samples. Data-parallel training measures it for free: each rank's local gradient is a
# batch of $B/p$, the allreduced one a batch of $B$, and
# $\mathbb{E}|G_B|^2 = |G|^2 + \mathrm{tr}(\Sigma)/B$ at both sizes gives two equations in the two
# unknowns (exercise 1). The trainer prints it as `B_simple`; here, for an MLP on the digits at
# 4 ranks, step by step:

# %%
mlp = train("noise", "--epochs", "6", "--batch-size", "16", "--lr", "0.05", ranks=4)
b = np.array([r["b_simple"] for r in mlp], dtype=float)
loss = np.array([r["loss"] for r in mlp], dtype=float)
steps = np.arange(1, len(b) + 1)
fig, ax = plt.subplots(figsize=(8, 3.4))
ax.plot(steps, b, color="C0", label="B_simple (moving averages of |G|² and tr Σ)")
ax.axhline(64, color="gray", ls="--", lw=1, label="global batch (64)")
ax.set_xlabel("training step (global batch of 64)")
ax.set_ylabel("gradient noise scale (samples)")
ax.set_ylim(0, None)
ax.grid(alpha=0.3)
ax2 = ax.twinx()
ax2.plot(steps, loss, color="C1", lw=0.8, alpha=0.7, label="training loss")
ax2.set_ylabel("training loss (nats)", color="C1")
ax2.set_ylim(0, None)
lines = ax.get_legend_handles_labels()
more = ax2.get_legend_handles_labels()
fig.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower center", ncol=3, frameon=False)
ax.set_title("gradient noise scale of the digits MLP, 4 ranks x 16 samples, SGD lr 0.05")
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# As training converges the true gradient shrinks faster than its noise, so $B_\text{simple}$
# grows: the batch that can be used efficiently gets larger during training. Lesson 6 compares the
# measured noise scale with the batch size at which steps-to-target stops falling.
#
# ---
# ## Exercises
#
# (Reference solutions, for instructors: `notebooks/solutions/s05_data_parallel.py`.)
#
# **Exercise 1: the noise scale from two batch sizes.** Write
# `noise_scale(g_small_sq, g_big_sq, b_small, b_big)`: from the squared gradient norms measured at
# batch sizes $B_\text{small}$ and $B_\text{big}$, solve for $|G|^2$ and $\mathrm{tr}(\Sigma)$ and
# return $B_\text{simple}$.

# %%
def noise_scale(g_small_sq, g_big_sq, b_small, b_big):
    raise NotImplementedError("exercise 1")


lessons.check_noise_scale(noise_scale)

# %% [markdown]
# **Exercise 2: exposed communication.** One communication thread reduces the buckets in the order
# they become ready. Write `exposed_comm(ready, durations, backward_end)`: bucket $i$ is ready at
# `ready[i]` seconds and its allreduce takes `durations[i]`; how long does the step wait after
# backward ends at `backward_end`?

# %%
def exposed_comm(ready, durations, backward_end):
    raise NotImplementedError("exercise 2")


lessons.check_exposed_comm(exposed_comm)

# %% [markdown]
# **Exercise 3 (no check).** Re-run the ResNet-8 timeline with `--bucket-mb 25` (one bucket) and
# with `--bucket-mb 0.01`. Use your `exposed_comm` to explain both: why does one big bucket hide
# nothing, and why do very small buckets stop helping (hint: each allreduce pays the latency
# $2(p-1)\alpha$ of the ring)?
