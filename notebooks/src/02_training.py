# %% [markdown]
# # 2. Training a network, and where the time goes
#
# Lesson 1 built gradients; here they train LeNet-5 (LeCun et al. 1998: two convolutions with
# pooling, three fully connected layers) on the 1797 handwritten 8x8 digits that ship with
# `minidl` (UCI, no download). Then we measure: which operations take the time, how much the
# compiled numba kernels buy over their plain-numpy references (`MINIDL_NUMBA=0`), and how a step
# compares with PyTorch on the same CPU.
#
# Why it matters for the rest of the course: data-parallel training (lessons 4-6) only pays when
# the computation per step is large next to the communication. Knowing your step time, and what
# it is made of, is the first number of every scaling estimate.

# %%
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minidl
import minidl.functional as F
from minidl import lessons
from minidl.data import DataLoader
from minidl.experiments import build_model, load_dataset
from minidl.threads import configure_threads

configure_threads(1)  # one BLAS/numba thread, as the benchmarks below use, so the step times compare
_ = minidl.manual_seed(0)
train, test, info = load_dataset("digits")
print(f"{len(train)} training and {len(test)} test images of shape {info.input_shape}, {info.num_classes} classes")

# %%
x, y = train[np.arange(10)]
fig, axes = plt.subplots(1, 10, figsize=(9, 1.3))
for ax, img, label in zip(axes, x, y):
    ax.imshow(img[0], cmap="gray_r")
    ax.set_title(str(label), fontsize=10)
    ax.axis("off")
fig.suptitle("ten training digits (8 x 8 pixels) and their labels", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The training loop
#
# One step: forward (the model's logits, the cross-entropy loss), backward (`loss.backward()`
# fills every parameter's `.grad`), and the optimizer's update. We time the three phases
# separately, as `minidl.train` does, because lesson 5 overlaps communication with exactly one of
# them (backward).

# %%
model = build_model("lenet", info)
print(model)
print(f"{sum(p.size for p in model.parameters())} parameters")
optimizer = minidl.optim.Adam(model.parameters(), lr=3e-3)
loader = DataLoader(train, batch_size=64, shuffle=True, seed=0)

def evaluate(model, dataset):
    model.eval()
    with minidl.no_grad():
        x, y = dataset[np.arange(len(dataset))]
        logits = model(minidl.tensor(x))
    model.train()
    return float(np.mean(logits.numpy().argmax(axis=1) == y))

losses, accuracies = [], [evaluate(model, test)]
phases = []  # (forward, backward, optimizer) seconds of every step
EPOCHS = 8
for epoch in range(EPOCHS):
    for xb, yb in loader:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(xb), yb)
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        phases.append((t1 - t0, t2 - t1, t3 - t2))
        losses.append(loss.item())
    accuracies.append(evaluate(model, test))
    print(f"epoch {epoch + 1}: last loss {losses[-1]:.3f}, test accuracy {accuracies[-1]:.3f}")

steps = len(losses)
median = 1e3 * np.median(phases[steps // EPOCHS :], axis=0)  # after the first epoch (kernels loaded, caches warm)
print(f"\nmedian milliseconds per step: forward {median[0]:.1f}, backward {median[1]:.1f}, optimizer {median[2]:.1f}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
ax1.plot(np.arange(1, steps + 1), losses, lw=0.8, color="C0", alpha=0.5, label="per step")
window = 10
ax1.plot(np.arange(window, steps + 1), np.convolve(losses, np.ones(window) / window, "valid"), color="C0",
         label=f"mean of {window} steps")
ax1.set_xlabel("optimizer step (batch of 64 images)")
ax1.set_ylabel("training loss (cross-entropy, nats)")
ax1.set_yscale("log")
ax1.legend()
ax1.grid(alpha=0.3)
ax2.plot(np.arange(EPOCHS + 1), 100 * np.array(accuracies), "o-", color="C2")
ax2.set_xlabel("epoch (passes over 1438 training images)")
ax2.set_ylabel("test accuracy (%)")
ax2.set_ylim(0, 100)
ax2.grid(alpha=0.3)
fig.suptitle("LeNet-5 on the embedded digits, Adam lr 3e-3")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Where the time goes: the op profile
#
# `python -m minidl.bench --profile lenet` times every op's forward and backward inside real
# training steps, alternating the numba kernels on and off in one process (so both see the same
# machine load). A backward's time includes the ops it calls. The benchmark feeds LeNet-5 its
# original 28 x 28 inputs (MNIST-sized, batch 64), where a step costs about ten times what it
# costs on the 8 x 8 digits above: the convolutions' work grows with the number of pixels.

# %%
work = Path(tempfile.mkdtemp(prefix="lesson2-"))

def run(*args):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return out.stdout

print(run("-m", "minidl.bench", "--profile", "lenet", "--threads", "1", "--rounds", "4", "--steps", "5",
          "--top", "10", "--json", str(work / "profile.json")))
profile = json.loads((work / "profile.json").read_text())

# %%
ops = profile["op_ms_per_step"]
top = sorted(ops["numpy"], key=lambda k: -ops["numpy"][k])[:10][::-1]
pos = np.arange(len(top))
fig, ax = plt.subplots(figsize=(8, 4))
ax.barh(pos + 0.2, [ops["numpy"].get(k, 0) for k in top], height=0.4, color="C7", label="numpy references")
ax.barh(pos - 0.2, [ops["numba"].get(k, 0) for k in top], height=0.4, color="C1", label="numba kernels")
ax.set_yticks(pos)
ax.set_yticklabels(top, fontsize=9)
ax.set_xlabel("time per training step (ms)")
med = profile["median_step_ms"]
ax.set_title(f"LeNet-5, 64 x 28 x 28 inputs, 1 thread: step {med['numba']:.1f} ms with numba, "
             f"{med['numpy']:.1f} ms without", fontsize=10)
ax.legend(loc="lower right")
ax.grid(axis="x", alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# With the kernels on, most of a step is the convolutions (im2col plus a matrix product, forward
# and backward). The numba kernels pay most where numpy needs several passes over memory for one
# operation (pooling's window maximum, ReLU's mask and their backwards), and little or nothing
# where numpy already calls BLAS (the matrix products). Set `MINIDL_NUMBA=0` before starting Python to run everything on
# the numpy references, which are also what the kernels are tested against.
#
# ## Side by side with PyTorch
#
# `python -m minidl.bench --models lenet` times the same model, batch and initial weights in
# `minidl` and in PyTorch on the CPU (and checks both start from the same loss). It needs PyTorch;
# where it is not installed, this cell says so and moves on.

# %%
if importlib.util.find_spec("torch") is None:
    print("PyTorch is not installed here: skipped (pip install torch --index-url https://download.pytorch.org/whl/cpu)")
else:
    run("-m", "minidl.bench", "--models", "lenet", "--threads", "1", "--rounds", "3", "--steps", "5",
        "--memory-repeats", "0", "--json", str(work / "bench.json"))
    r = json.loads((work / "bench.json").read_text())["results"][0]
    ms = r["median_step_ms"]
    print(f"LeNet-5, batch {r['batch']} of 28 x 28, 1 thread: minidl {ms['minidl']:.1f} ms per step, "
          f"PyTorch {ms['torch']:.1f} ms; same first loss: {r['first_step_loss']}")

# %% [markdown]
# ---
# ## Exercises
#
# (Reference solutions, for instructors: `notebooks/solutions/s02_training.py`.)
#
# **Exercise 1: SGD with momentum.** Write the update PyTorch's `SGD` makes, on numpy arrays:
# $g = \nabla + \lambda\,\theta$ (weight decay), $v \leftarrow \mu v + g$, $\theta \leftarrow
# \theta - \eta v$. Return the new parameters and velocity. The check follows three steps and
# names the usual mistakes.

# %%
def sgd_momentum_step(param, grad, velocity, lr, momentum, weight_decay):
    raise NotImplementedError("exercise 1: return (new param, new velocity)")


lessons.check_sgd_momentum(sgd_momentum_step)

# %% [markdown]
# **Exercise 2: evaluation done right.** Write `accuracy(model, dataset)`: the fraction of samples
# whose largest logit is the label, over the whole dataset in batches of 256. The check's model
# contains dropout, and its dataset does not divide into full batches.

# %%
def accuracy(model, dataset):
    raise NotImplementedError("exercise 2: return the fraction of correctly classified samples")


lessons.check_accuracy(accuracy)

# %% [markdown]
# **Exercise 3 (no check).** Train the same LeNet-5 with `minidl.optim.SGD(momentum=0.9)` at a few
# learning rates. How many epochs does it need to reach the accuracy Adam reached above? Lesson 6
# asks the same question across batch sizes.
