"""The benchmark's workloads: four models, their PyTorch twins with the same weights, and the numpy floor.

Each model (an MLP 784-512-512-10 at batch 128, LeNet-5 on 28x28 at batch 64, a ResNet basic
block on 32x32x3 at batch 32, the tiny transformer classifier on 64 sequences of 16 tokens) is
built once in minidl; the PyTorch twin gets the same architecture and a copy of the same
weights, and the engines must give the same first-step loss before anything is timed. A step
is forward, cross-entropy, backward and an SGD-momentum update on one fixed batch. The numpy
floor is the MLP written by hand in numpy with no autograd at all: the time an engine with zero
overhead would take with the same GEMMs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

MODELS = ("mlp", "lenet", "resnet-block", "transformer")
BATCH = {"mlp": 128, "lenet": 64, "resnet-block": 32, "transformer": 64}
SEQ_LEN, VOCAB, SEQ_CLASSES = 16, 16, 4
LR, MOMENTUM = 0.01, 0.9


# ----------------------------------------------------------------------------- workloads
def make_batch(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random batch (inputs, integer targets) for a model."""
    rng = np.random.default_rng(seed)
    n = BATCH[name]
    if name == "transformer":
        return rng.integers(0, VOCAB, (n, SEQ_LEN)), rng.integers(0, SEQ_CLASSES, n)
    shape = {"mlp": (n, 784), "lenet": (n, 1, 28, 28), "resnet-block": (n, 3, 32, 32)}[name]
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, n)


def make_minidl_model(name: str) -> Any:
    import minidl
    from minidl import models, nn
    from minidl.nn.residual import BasicBlock

    minidl.manual_seed(0)
    if name == "mlp":
        return models.MLP(784, (512, 512), 10)
    if name == "lenet":
        return models.LeNet5(10, in_channels=1, input_size=28)
    if name == "resnet-block":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            BasicBlock(16, 16),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
    if name == "transformer":
        return models.TransformerClassifier(VOCAB, SEQ_CLASSES, max_len=SEQ_LEN)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def make_torch_model(name: str, source: Any) -> Any:
    """The PyTorch twin of a minidl model, with a copy of its weights (parameters in the same order)."""
    import torch
    from torch import nn

    class Block(nn.Module):  # minidl.nn.residual.BasicBlock without downsampling
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + x)

    class Transformer(nn.Module):  # minidl.models.TransformerClassifier, pre-norm, mean pooling
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 32)
            self.pos_embed = nn.Parameter(torch.zeros(1, SEQ_LEN, 32))
            layer = nn.TransformerEncoderLayer(32, 4, 64, 0.0, activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(32)
            self.head = nn.Linear(32, SEQ_CLASSES)

        def forward(self, ids: Any) -> Any:
            x = self.embed(ids) + self.pos_embed[:, : ids.shape[1]]
            return self.head(self.norm(self.encoder(x)).mean(dim=1))

    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    elif name == "lenet":
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )
    elif name == "resnet-block":
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            Block(16),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
    else:
        model = Transformer()
    mine = list(source.parameters())
    theirs = list(model.parameters())
    if len(mine) != len(theirs):
        raise RuntimeError(f"bench: {name} has {len(mine)} parameters in minidl but {len(theirs)} in PyTorch")
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if tuple(a.shape) != tuple(b.shape):
                raise RuntimeError(f"bench: {name} parameter {i}: minidl {a.shape} vs PyTorch {tuple(b.shape)}")
            b.copy_(torch.from_numpy(np.array(a.data)))
    return model


def minidl_step(name: str) -> tuple[Callable[[], float], Any]:
    """A closure running one minidl training step (returns the loss), and the model."""
    import minidl
    import minidl.functional as F
    from minidl import optim

    model = make_minidl_model(name)
    x, y = make_batch(name)
    inputs = x if name == "transformer" else minidl.tensor(x)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    return training_step(model, F.cross_entropy, inputs, y, opt), model


def torch_step(name: str, source: Any) -> Callable[[], float]:
    """A closure running one step of the PyTorch twin of ``source`` (returns the loss)."""
    import torch
    import torch.nn.functional as TF

    model = make_torch_model(name, source)
    x, y = make_batch(name)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    return training_step(model, TF.cross_entropy, torch.from_numpy(x), torch.from_numpy(y), opt)


def training_step(model: Any, loss_fn: Callable, inputs: Any, target: Any, opt: Any) -> Callable[[], float]:
    """One step, written once for both engines (they share PyTorch's API): forward, loss, backward, update."""

    def step() -> float:
        loss = loss_fn(model(inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def numpy_floor_step(source: Any) -> Callable[[], float]:
    """The MLP 784-512-512-10 step written by hand in numpy: no graph, no Tensor, no dispatch.

    Same weights as ``source`` (a minidl MLP), same arithmetic: ReLU layers, mean softmax
    cross-entropy, SGD with momentum (PyTorch's rule: the first step sets the buffer to the gradient).
    """
    params = [np.array(p.data) for p in source.parameters()]  # W1, b1, W2, b2, W3, b3; W is (out, in)
    bufs: list[np.ndarray | None] = [None] * len(params)
    x, y = make_batch("mlp")
    n = x.shape[0]
    rows = np.arange(n)

    def step() -> float:
        w1, b1, w2, b2, w3, b3 = params
        h1 = x @ w1.T
        h1 += b1
        a1 = np.maximum(h1, 0)
        h2 = a1 @ w2.T
        h2 += b2
        a2 = np.maximum(h2, 0)
        z = a2 @ w3.T
        z += b3
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - z[rows, y]))
        dz = e / s
        dz[rows, y] -= 1
        dz *= 1.0 / n
        grads = [None, None, None, None, dz.T @ a2, dz.sum(axis=0)]
        da2 = dz @ w3
        da2 *= h2 > 0
        grads[2], grads[3] = da2.T @ a1, da2.sum(axis=0)
        da1 = da2 @ w2
        da1 *= h1 > 0
        grads[0], grads[1] = da1.T @ x, da1.sum(axis=0)
        for i, (p, g) in enumerate(zip(params, grads)):
            if bufs[i] is None:
                bufs[i] = g.copy()
            else:
                bufs[i] *= MOMENTUM
                bufs[i] += g
            p -= LR * bufs[i]
        return loss

    step.params = params  # type: ignore[attr-defined]  (for the test that it computes what minidl does)
    return step


def set_threads(n: int) -> None:
    """Limit BLAS, numba and (if loaded) PyTorch to ``n`` threads each."""
    from minidl.threads import configure_threads

    configure_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def engines_for(name: str, use_torch: bool, numpy_reference: bool) -> tuple[dict[str, Callable[[], float]], Any]:
    from minidl import kernels

    step, model = minidl_step(name)
    engines: dict[str, Callable[[], float]] = {"minidl": step}
    if numpy_reference:
        ref_step, _ = minidl_step(name)

        def reference() -> float:
            with kernels.use_numba(False):
                return ref_step()

        engines["minidl-numpy"] = reference
    if use_torch:
        engines["torch"] = torch_step(name, model)
    if name == "mlp":
        engines["numpy-floor"] = numpy_floor_step(model)
    return engines, model


def check_same_loss(name: str, engines: dict[str, Callable[[], float]]) -> dict[str, float]:
    """First-step losses of all engines (same weights, same batch): they must agree."""
    losses = {k: fn() for k, fn in engines.items()}
    ref = losses["minidl"]
    for k, v in losses.items():
        if not abs(v - ref) <= 1e-4 * max(1.0, abs(ref)):
            raise RuntimeError(f"bench: {name}: first-step loss {v:.6f} from {k} differs from minidl's {ref:.6f}")
    return losses
