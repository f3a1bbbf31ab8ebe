"""Suite-wide setup: the helpers in this folder import by name, and CI can insist on PyTorch."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config: pytest.Config) -> None:
    """With ``MINIDL_REQUIRE_TORCH=1`` (set by CI) a missing or broken torch stops the run.

    The torch-parity tests skip themselves where torch is absent, which is right for a user's
    machine; in CI that skip would silently drop them, so there it is an error instead.
    """
    if os.environ.get("MINIDL_REQUIRE_TORCH") == "1":
        try:
            import torch  # noqa: F401
        except Exception as e:
            raise pytest.UsageError(
                f"MINIDL_REQUIRE_TORCH=1 but torch cannot be imported ({e}); CI installs torch==2.13.0 (CPU)"
            ) from e
