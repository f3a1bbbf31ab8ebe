# %% [markdown]
# # 4. The same algorithms on real MPI processes
#
# Lesson 3 ran the allreduce algorithms on virtual ranks. Here the very same generator functions
# run on real processes, launched by `mpiexec` and talking through MPI (MPICH's shared-memory
# transport on this machine), so you can measure them, compare them with the allreduce MPI itself
# provides, and see a real machine's effects no simple model has: here, more processes than cores.
#
# A notebook cannot itself be an MPI program with several ranks, so `collectives.lessons.run_ranks`
# writes the code you give it to a file, runs it on $p$ ranks under `mpiexec` with a timeout,
# and returns each rank's printed output (kept separate, not interleaved) and whatever it assigned
# to a variable named `result`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import collectives
from collectives import lessons

run = lessons.run_ranks(
    "from mpi4py import MPI\n"
    "import os, socket\n"
    "comm = MPI.COMM_WORLD\n"
    "print(f'rank {comm.Get_rank()} of {comm.Get_size()}, pid {os.getpid()} on {socket.gethostname()}')\n"
    "result = comm.Get_rank() ** 2\n",
    ranks=4,
    timeout=60,
)
print(run)
print("results:", run.results)
print("cores on this machine:", os.cpu_count())

# %% [markdown]
# ## Correct on real ranks, then timed
#
# Each rank fills a buffer with its rank + 1, so the allreduce must give $p(p+1)/2$ everywhere;
# then every algorithm and MPI's own `Allreduce` are timed over sizes from 1 KiB to 4 MiB (float64),
# best of three batches of back-to-back calls, as nccl-tests does. The code below is exactly what
# each rank runs.

# %%
BENCH = """
import time
import numpy as np
from mpi4py import MPI
import collectives

comm = MPI.COMM_WORLD
p, r = comm.Get_size(), comm.Get_rank()
sizes = [1 << 10, 1 << 14, 1 << 18, 1 << 22]  # bytes per rank
names = [*collectives.ALGORITHMS, "MPI"]

def call(name, buf):
    if name == "MPI":
        comm.Allreduce(MPI.IN_PLACE, buf)
    else:
        collectives.allreduce(buf, comm, algorithm=name)

for name in names:  # correctness first
    buf = np.full(1000, r + 1.0)
    call(name, buf)
    assert np.all(buf == p * (p + 1) / 2), (name, buf[:3])

times = {}
for name in names:
    times[name] = []
    for nbytes in sizes:
        buf = np.ones(nbytes // 8)
        reps = 20 if nbytes <= 1 << 18 else 5
        call(name, buf)  # warm-up
        best = float("inf")
        for _ in range(3):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                call(name, buf)
            best = min(best, (time.perf_counter() - t0) / reps)
        times[name].append(comm.allreduce(best, op=MPI.MAX))  # the slowest rank is the collective's time
if r == 0:
    print("all algorithms correct on", p, "ranks")
    result = {"sizes": sizes, "times": times}
"""

measured = {}
for p in (2, 4):
    run = lessons.run_ranks(BENCH, ranks=p, timeout=150)
    print(run.outputs[0].strip())
    measured[p] = run.results[0]

# %%
for p, m in measured.items():
    print(f"\n{p} ranks: time per allreduce (us)")
    print(f"{'algorithm':<20}" + "".join(f"{s:>10}" for s in ("1 KiB", "16 KiB", "256 KiB", "4 MiB")))
    for name, ts in m["times"].items():
        print(f"{name:<20}" + "".join(f"{t * 1e6:>10.1f}" for t in ts))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, (p, m) in zip(axes, measured.items()):
    for i, (name, ts) in enumerate(m["times"].items()):
        style = dict(color="k", lw=2.5) if name == "MPI" else dict(color=f"C{i}", lw=1.2)
        ax.loglog(m["sizes"], np.array(ts) * 1e6, "o-", ms=3, label=name, **style)
    ax.set_title(f"{p} ranks on {os.cpu_count()} cores" + (" (oversubscribed)" if p > os.cpu_count() else ""))
    ax.set_xlabel("message size per rank (bytes)")
    ax.grid(alpha=0.3, which="both")
axes[0].set_ylabel("allreduce time (us)")
axes[1].legend(fontsize=8)
fig.suptitle("hand-written allreduce algorithms vs MPI's own, measured on this machine (float64)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Why 4 ranks on 2 cores behave differently from 2
#
# With 2 ranks on 2 cores each process has a core: a message is a copy through shared memory,
# microseconds for small sizes, and every algorithm is close to what its step count predicts.
# With 4 ranks on 2 cores, two processes share each core. An MPI process waiting for a message
# does not sleep: it *polls*, spinning on its core. So the rank that should send you the data may
# not be running at all until the scheduler takes the core from a spinning neighbour, which
# happens on a time slice of milliseconds. Compare the left ends of the two panels: a 1 KiB
# allreduce goes from microseconds to milliseconds, for every algorithm and for MPI's own, and the
# differences between algorithms drown in when the scheduler happens to run whom. Large messages
# are hurt relatively less, because there the copying itself is the work. No alpha-beta model of the network predicts
# this: it is the machine, not the interconnect. On a cluster, give each rank its own core (and
# set `--threads`, as `minidl.train` does, so BLAS threads do not oversubscribe either).
#
# ---
# ## Exercises
#
# (Reference solutions, for instructors: `notebooks/solutions/s04_real_ranks.py`.)
#
# **Exercise 1: bus bandwidth.** Write `busbw(nbytes, seconds, p)`, nccl-tests' bus bandwidth of an
# allreduce in bytes per second (lesson 3 used it), and use it on the table above: which algorithm
# comes closest to MPI's busbw at 4 MiB on 2 ranks?

# %%
def busbw(nbytes, seconds, p):
    raise NotImplementedError("exercise 1")


lessons.check_busbw(busbw)

# %% [markdown]
# **Exercise 2: measure alpha and beta.** Write `fit_alpha_beta(sizes, seconds)` returning the
# latency $\alpha$ (s) and the time per byte $\beta$ (s/B) of the line $t = \alpha + \beta n$
# through measurements. The check uses noisy synthetic timings; the next cell then applies your fit
# to MPI's measured times on 2 ranks, which gives this machine's $\alpha$ and bandwidth.

# %%
def fit_alpha_beta(sizes, seconds):
    raise NotImplementedError("exercise 2: a least-squares line, intercept and slope")


lessons.check_alpha_beta_fit(fit_alpha_beta)

# %%
try:
    alpha, beta = fit_alpha_beta(np.array(measured[2]["sizes"], float), np.array(measured[2]["times"]["MPI"]))
    print(f"MPI on 2 ranks here: alpha = {alpha * 1e6:.1f} us, bandwidth 1/beta = {1 / beta / 1e9:.2f} GB/s")
except NotImplementedError:
    print("write fit_alpha_beta above to see this machine's alpha and beta")

# %% [markdown]
# **Exercise 3 (no check).** Run your ring from lesson 3 on real ranks: put its code in the string
# given to `run_ranks`, register it with `collectives.register(collectives.AlgorithmSpec(...))`
# (see `examples/custom_allreduce.py`), and time it next to the project's ring. Is the segmented
# ring faster at 4 MiB? Why might it be, on a machine where a reduction and a copy compete for the
# same memory bandwidth?
