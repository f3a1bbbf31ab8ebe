"""Modules that hold other modules."""

from __future__ import annotations

from typing import Any

from minidl.nn.module import Module


class Sequential(Module):
    """Applies its modules in order; they are named "0", "1", ... like ``torch.nn.Sequential``."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x
