# %% [markdown]
# # 3. Allreduce algorithms, step by step, in the simulator
#
# In data-parallel training every rank computes a gradient on its own data and then all ranks
# need the **sum** (or mean) of all of them: an *allreduce*. It runs every step, on every
# parameter, so its cost decides how far training scales. There is no single best way to do it:
# the classic algorithms trade the number of messages (latency) against the bytes each rank sends
# (bandwidth), and which wins depends on the message size and the number of ranks.
#
# `collectives` has each algorithm written once, by hand, against a small point-to-point
# interface (`isend`, `irecv`, `sendrecv`, `reduce`), as a generator that *yields* at every
# communication step. The same code runs over MPI (lesson 4) and in `collectives.sim`, which runs
# thousands of virtual ranks in this one process, checks the result, and predicts the time on an
# interconnect you describe. This lesson uses the simulator throughout.

# %%
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import collectives
from collectives import lessons, sim
from collectives.sim import timeline

work = Path(tempfile.mkdtemp(prefix="lesson3-"))
for name, spec in collectives.ALGORITHMS.items():
    print(f"{name:<20} {spec.summary}")

# %% [markdown]
# ## The cost model
#
# The simulator charges each message $\alpha + m\beta$ ($\alpha$: latency per message, $\beta$:
# seconds per byte, i.e. 1/bandwidth) and each reduction $\gamma$ per byte, with one send and one
# receive per rank at a time: the *textbook* model in which the classic closed forms are derived
# (Thakur, Rabenseifner and Gropp 2005). We use an InfiniBand EDR link (12.5 GB/s,
# $\alpha$ = 0.8 us) and a CPU that adds 4 GB/s. For $n$ bytes on $p$ ranks:
#
# | algorithm | time | wins when |
# | --- | --- | --- |
# | naive (reduce at rank 0, then send to each) | $2(p-1)(\alpha + n\beta) + (p-1)n\gamma$ | never, it is the baseline |
# | binomial tree (reduce, then broadcast) | $2\lceil\log_2 p\rceil(\alpha + n\beta) + \lceil\log_2 p\rceil n\gamma$ | small $p$ and $n$ |
# | recursive doubling | $\log_2 p\,(\alpha + n\beta + n\gamma)$ | small messages: fewest steps |
# | ring | $2(p-1)\alpha + 2\frac{p-1}{p}n\beta + \frac{p-1}{p}n\gamma$ | large messages: optimal bytes |
# | Rabenseifner (halving, then doubling) | $2\log_2 p\,\alpha + 2\frac{p-1}{p}n\beta + \frac{p-1}{p}n\gamma$ | medium to large |
# | double binary tree (two trees, half the data each) | $O(\log p)\,\alpha$; near $n\beta$ only when finely pipelined | large $p$ (NCCL's choice) |
#
# Each algorithm declares its cost, for the code as written (the project's double tree is not
# segmented, so its bandwidth term is well above the pipelined ideal); here are the three terms at
# $p = 8$ and 1 MiB:

# %%
p, nbytes = 8, 1 << 20
print(f"{'algorithm':<20} {'alpha terms':>11} {'beta bytes':>11} {'gamma bytes':>12} {'bytes sent/rank':>16}")
for name, spec in collectives.ALGORITHMS.items():
    c = spec.cost(p, nbytes, 4)
    print(f"{name:<20} {c.latency_terms:>11.0f} {c.transfer_bytes:>11.0f} {c.reduce_bytes:>12.0f} "
          f"{c.bytes_sent_per_rank:>16.0f}")
print(f"\nlower bound on bytes sent per rank: 2(p-1)/p n = {2 * (p - 1) / p * nbytes:.0f}")

# %% [markdown]
# ## Step by step: timelines
#
# `sim.simulate(name, p, nbytes, timeline=True)` runs the algorithm message by message without any
# data and records every send, receive and reduction; `timeline.plot` draws them per rank. Watch
# the ring keep every rank busy at every step, the tree leave most ranks idle, and recursive
# doubling finish in $\log_2 p$ = 3 steps of the whole vector.

# %%
model = sim.CostModel.textbook(alpha=0.8e-6, beta=1 / 12.5e9, gamma=1 / 4e9)
for name in ("naive", "tree", "recursive_doubling", "ring", "rabenseifner", "double_tree"):
    result = sim.simulate(name, 8, 1 << 20, model=model, timeline=True)
    path = timeline.plot(result, work / f"{name}.png", title=f"{name}: 8 ranks, 1 MiB each, "
                         f"{result.time * 1e6:.0f} us, busbw {result.busbw / 1e9:.2f} GB/s")
    display(Image(filename=str(path), width=720))

# %% [markdown]
# ## Time and bus bandwidth against message size
#
# The same prediction over sizes from 1 KiB to 256 MiB at 16 ranks, one line per algorithm.
# *Bus bandwidth* (nccl-tests' busbw) is $\frac{n}{t}\cdot\frac{2(p-1)}{p}$: what each link
# carries, comparable across rank counts and with the link's 12.5 GB/s (less the reduction's
# cost).

# %%
p = 16
sizes = [1 << k for k in range(10, 29, 2)]
times = {name: [sim.simulate(name, p, n, model=model).time for n in sizes] for name in collectives.ALGORITHMS}

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for i, (name, ts) in enumerate(times.items()):
    ax1.loglog(sizes, np.array(ts) * 1e6, "o-", ms=3, color=f"C{i}", label=name)
    ax2.semilogx(sizes, [n / t * 2 * (p - 1) / p / 1e9 for n, t in zip(sizes, ts)], "o-", ms=3, color=f"C{i}")
ax1.set_xlabel("message size per rank (bytes)")
ax1.set_ylabel("allreduce time (us)")
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3, which="both")
ax2.axhline(12.5, color="gray", ls="--", lw=1)
ax2.text(sizes[0], 12.7, "link bandwidth 12.5 GB/s", fontsize=8, color="gray")
ax2.set_xlabel("message size per rank (bytes)")
ax2.set_ylabel("bus bandwidth (GB/s)")
ax2.set_ylim(0, 14)
ax2.grid(alpha=0.3, which="both")
fig.suptitle(f"{p} simulated ranks, textbook model: alpha 0.8 us, 12.5 GB/s links, 4 GB/s reduction")
fig.tight_layout()
display(fig)  # (timeline.plot switched matplotlib to its file backend, so plt.show() would not draw here)
plt.close(fig)

# %% [markdown]
# Small messages are latency-bound: recursive doubling (fewest steps) wins, the ring (most steps)
# loses. Large messages are bandwidth-bound: the ring and Rabenseifner send the minimum
# $2\frac{p-1}{p}n$ bytes and approach the link bandwidth less the reduction's share, while
# recursive doubling sends the whole vector $\log_2 p$ times.
#
# ## Who wins where: the crossover map
#
# `python -m collectives.sim sweep` does this over rank counts too, simulating message by message
# where it is affordable and falling back to the closed forms (marked `*`) where a simulation would
# need more than 100000 messages. This is the decision MPICH encodes in its selection table.

# %%
out = subprocess.run([sys.executable, "-m", "collectives.sim", "sweep", "--ranks", "2..1024", "--sizes", "1K..256M",
                      "--plot", str(work / "map.png")], capture_output=True, text=True, timeout=300)
print("\n".join(out.stdout.splitlines()[-3:]) or out.stderr)
display(Image(filename=str(work / "map.png"), width=900))

# %% [markdown]
# ---
# ## Exercises
#
# (Reference solutions, for instructors: `notebooks/solutions/s03_collectives.py`.)
#
# **Exercise 1: your own ring allreduce.** The ring cuts the buffer into $p$ chunks
# (`collectives.chunk_bounds(n, p)`). Rank $r$ sends to $r+1$ and receives from $r-1$. At step
# $s$ it sends chunk $(r - s - 1) \bmod p$ and receives chunk $(r - s - 2) \bmod p$: in the first
# $p-1$ steps (reduce-scatter) it adds the incoming chunk into its own, after which rank $r$ holds
# chunk $r$ complete; in the next $p-1$ steps (allgather) it stores the incoming, complete chunk in
# place.
#
# Below is a draft with **three bugs** planted. Run the check: it runs your function on real data
# against numpy in the simulator, with random message delivery orders, and when something fails it
# says what (a deadlock with its wait cycle, a truncated message, wrong elements) and where your
# schedule first departs from the ring's. Fix one bug at a time and re-run. Touch data only through
# `t.reduce`, `t.copy`, messages and slices: the simulator also runs your code on symbols.

# %%
def my_ring(t, buf, op):
    p, r = t.size, t.rank
    if p == 1:
        return
    bounds = collectives.chunk_bounds(buf.size, p)
    right, left = (r + 1) % p, (r - 1) % p
    incoming = t.scratch(bounds[1] - bounds[0], buf.dtype)  # chunk 0 is the largest
    for s in range(p - 1):  # reduce-scatter
        c, d = (r - s - 1) % p, (r - s - 1) % p
        a, b = bounds[d], bounds[d + 1]
        yield t.send(buf[bounds[c] : bounds[c + 1]], right, tag=s)
        yield t.recv(incoming[: b - a], left, tag=s)
        t.reduce(op, buf[a:b], incoming[: b - a])
    for s in range(p - 1, 2 * p - 3):  # allgather
        c, d = (r - s - 1) % p, (r - s - 2) % p
        yield t.sendrecv(buf[bounds[c] : bounds[c + 1]], right, buf[bounds[d] : bounds[d + 1]], left, tag=s)


lessons.check_ring_allreduce(my_ring)

# %% [markdown]
# Once all three are fixed, the check goes on to **prove** your ring correct at 1024 ranks: it runs
# it on symbols (each element carries the set of ranks whose data it holds, as Microsoft's
# MSCCLang checker does) and verifies that every element of every rank ends holding every rank
# exactly once, which covers every possible input. It also compares the bytes your busiest rank
# sends with the lower bound. This is what a passing answer looks like, shown here on the
# project's own ring (`collectives/algorithms/ring.py`, segmented like NCCL's):

# %%
from collectives.algorithms.ring import ring_allreduce

lessons.check_ring_allreduce(ring_allreduce, prove_at=1024)

# %% [markdown]
# **Exercise 2: the ring's cost.** Write `ring_time(p, nbytes, alpha, beta, gamma)`, the textbook
# ring's time in seconds. Count: how many messages does a rank send one after the other, of what
# size, and how many bytes does it reduce?

# %%
def ring_time(p, nbytes, alpha, beta, gamma):
    raise NotImplementedError("exercise 2")


lessons.check_ring_cost(ring_time)

# %% [markdown]
# **Exercise 3 (no check).** From the closed forms, at which message size does the ring start to
# beat recursive doubling at $p = 64$ on this model? Compare with the crossover map, then run
# `sim.simulate` on your ring and on `recursive_doubling` at that size.
