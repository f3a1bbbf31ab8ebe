# %% [markdown]
# # 1. Autograd: from the chain rule to the Tensor engine
#
# Training a network means following the gradient of a loss with respect to millions of
# parameters. Writing those derivatives by hand is hopeless; **reverse-mode automatic
# differentiation** gets all of them for about the price of one more forward pass. This lesson
# builds the idea from a scalar chain rule up to `minidl`'s engine, then has you add an op of your
# own and take derivatives of derivatives.
#
# You will see: the chain rule done by hand and by the engine; the graph the engine records; how
# an op declares its forward and backward side by side; gradcheck; double backward and a
# Hessian-vector product.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minidl
from minidl import lessons

_ = minidl.manual_seed(0)

# %% [markdown]
# ## The chain rule on one number
#
# Take $y = \tanh(wx + b)$ and a loss $L = (y - t)^2$. With $z = wx + b$:
#
# $$\frac{\partial L}{\partial w} = \underbrace{2(y - t)}_{\partial L/\partial y}\;
# \underbrace{(1 - y^2)}_{\partial y/\partial z}\;\underbrace{x}_{\partial z/\partial w}$$
#
# Reverse mode evaluates this product **from the loss backwards**: each step multiplies the
# gradient arriving from above by one local derivative. That is all `backward()` does, once per
# recorded operation, in reverse order of the forward pass.

# %%
x, w, b, t = 0.5, -1.2, 0.3, 0.8
z = w * x + b
y = np.tanh(z)
by_hand = {"w": 2 * (y - t) * (1 - y**2) * x, "b": 2 * (y - t) * (1 - y**2)}

W = minidl.tensor(w, dtype=minidl.float64, requires_grad=True)
B = minidl.tensor(b, dtype=minidl.float64, requires_grad=True)
L = ((W * x + B).tanh() - t) ** 2
L.backward()
print(f"dL/dw by hand {by_hand['w']:+.10f}   by the engine {W.grad.item():+.10f}")
print(f"dL/db by hand {by_hand['b']:+.10f}   by the engine {B.grad.item():+.10f}")

# %% [markdown]
# ## The graph the engine records
#
# Every operation on a tensor that requires a gradient records a node: which function made the
# output and what its inputs were. `grad_fn` is that node; walking from the loss to the leaves
# visits the same chain of local derivatives as the formula above.

# %%
def show(node, depth=0):
    if node is None:
        return
    print("  " * depth + node.name)
    for arg in node.inputs:
        if isinstance(arg, minidl.Tensor) and arg.grad_fn is not None:
            show(arg.grad_fn, depth + 1)


L = ((W * x + B).tanh() - t) ** 2
show(L.grad_fn)

# %% [markdown]
# ## Tensors: the same rule, a matrix at a time
#
# For a layer $Y = XW^\top$ the local derivatives are matrices, and the chain rule becomes matrix
# products: $\partial L/\partial W = (\partial L/\partial Y)^\top X$. The engine does exactly
# this; here we check it against the formula for a small linear layer with a squared loss.

# %%
X = minidl.randn(16, 3)
Wt = minidl.randn(2, 3, requires_grad=True)
T = minidl.randn(16, 2)
loss = ((X @ Wt.T - T) ** 2).sum()
loss.backward()
dY = 2 * (X.numpy() @ Wt.detach().numpy().T - T.numpy())
print("max |engine - formula| =", np.abs(Wt.grad.numpy() - dY.T @ X.numpy()).max())

# %% [markdown]
# ## An op is a forward and a backward, side by side
#
# A new operation subclasses `minidl.autograd.Function`. `forward(ctx, *arrays)` gets numpy arrays
# and returns one; `backward(ctx, grad)` gets the gradient of the output (a Tensor) and returns the
# gradient of each input: the upstream gradient times the local derivative. `ctx.inputs` holds the
# inputs as the caller passed them (Tensors stay Tensors), so a backward **written with Tensor
# ops** is itself recorded, and can be differentiated again.
#
# Here is $\mathrm{cube}(x) = x^3$, with $\partial/\partial x = 3x^2$:

# %%
class Cube(minidl.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.inputs
        return grad * 3 * x**2


xs = minidl.tensor([-1.0, 0.5, 2.0], dtype=minidl.float64, requires_grad=True)
Cube.apply(xs).sum().backward()
print("gradient of sum(x^3):", xs.grad.numpy(), " expected 3x^2 =", 3 * xs.detach().numpy() ** 2)

# %% [markdown]
# **gradcheck** is how every op in `minidl` is tested: it compares the analytic gradient with
# float64 central differences $\frac{f(x + \epsilon) - f(x - \epsilon)}{2\epsilon}$ and names the
# worst element when they disagree. `gradgradcheck` does the same to the gradient itself.

# %%
print(minidl.gradcheck(Cube.apply, [minidl.randn(5, dtype=minidl.float64, requires_grad=True)]))
print(minidl.gradgradcheck(Cube.apply, [minidl.randn(5, dtype=minidl.float64, requires_grad=True)]))

# %% [markdown]
# ## Derivatives of derivatives
#
# `minidl.grad(y, x, create_graph=True)` returns the gradient *as a recorded computation*, so it
# can be differentiated again. The plot compares the engine's first and second derivatives of
# $\tanh$ with the closed forms $1 - \tanh^2 x$ and $-2\tanh x\,(1 - \tanh^2 x)$.

# %%
grid = np.linspace(-3, 3, 121)
xg = minidl.tensor(grid, requires_grad=True)
yg = xg.tanh()
(d1,) = minidl.grad(yg.sum(), xg, create_graph=True)
(d2,) = minidl.grad(d1.sum(), xg)

th = np.tanh(grid)
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.plot(grid, th, color="k", label="tanh x")
ax.plot(grid, 1 - th**2, color="C0", label="closed form: 1 - tanh² x")
ax.plot(grid, -2 * th * (1 - th**2), color="C3", label="closed form: -2 tanh x (1 - tanh² x)")
ax.plot(grid[::6], d1.detach().numpy()[::6], "o", color="C0", mfc="none", label="engine: first derivative")
ax.plot(grid[::6], d2.detach().numpy()[::6], "s", color="C3", mfc="none", label="engine: second derivative")
ax.set_xlabel("x (dimensionless)")
ax.set_ylabel("value (dimensionless)")
ax.set_title("tanh and its derivatives: double backward vs closed forms")
ax.legend(fontsize=8, loc="upper left")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print("max error, first derivative :", np.abs(d1.detach().numpy() - (1 - th**2)).max())
print("max error, second derivative:", np.abs(d2.detach().numpy() + 2 * th * (1 - th**2)).max())

# %% [markdown]
# ## Hessian-vector products
#
# The Hessian of a network has (parameters)² entries: never formed. But its product with a vector
# costs two backward passes: $Hv = \nabla_x\big(\nabla_x f \cdot v\big)$. Power iteration on
# $Hv$ finds the top eigenvalue of the Hessian, the *sharpness* of a minimum, which lesson 6
# compares between small- and large-batch training. You write `hvp` in exercise 2.
#
# ---
# ## Exercises
#
# Each exercise ends with a check that runs your answer against an independent oracle and says
# what is wrong in words. (Reference solutions, for instructors:
# `notebooks/solutions/s01_autograd.py`.)
#
# **Exercise 1: a softplus op.** Write `Softplus`, a `Function` computing
# $\mathrm{softplus}(x) = \log(1 + e^x)$, whose derivative is $\sigma(x) = 1/(1 + e^{-x})$.
# The check evaluates it at $x = -40 \dots 800$ (the naive formula overflows: find a stable one),
# gradchecks it, and tells you whether your backward is differentiable too.

# %%
class Softplus(minidl.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        raise NotImplementedError("exercise 1: return log(1 + e^x), computed without overflow")

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("exercise 1: return grad times the local derivative")


lessons.check_softplus(Softplus)

# %% [markdown]
# **Exercise 2: a Hessian-vector product.** Write `hvp(f, x, v)` returning $H_f(x)\,v$ for a scalar
# function `f` of a tensor `x`, with two calls to `minidl.grad`. The check uses
# $f(x) = \sum x^3 + (a \cdot x)^2$, whose Hessian $\mathrm{diag}(6x) + 2aa^\top$ it knows.

# %%
def hvp(f, x, v):
    raise NotImplementedError("exercise 2: differentiate (grad f . v) once more")


lessons.check_hvp(hvp)

# %% [markdown]
# **Exercise 3 (no check: compare with the plot above).** Use your `hvp` in ten steps of power
# iteration, $v \leftarrow Hv / \lVert Hv \rVert$, on $f(x) = \sum_i i\,x_i^2$ for
# $x \in \mathbb{R}^5$. Which eigenvalue do you find, and why is it $2 \cdot 4$?
