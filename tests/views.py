"""The mapper's view of an architecture file, for tests that map without simulating."""

from __future__ import annotations

from pathlib import Path

from arch.accelerator import Accelerator
from desim.experiment import load_arch
from desim.hardware_view import hardware_view
from desim.module import Simulator
from mappings.target import HardwareView

ARCH = Path(__file__).resolve().parent.parent / "configs" / "arch"


def arch_view(name: str, *overrides: str) -> HardwareView:
    """`configs/arch/<name>` with `key.path=value` overrides, as the runner hands it to the
    mapper."""
    return hardware_view(Accelerator(Simulator(), load_arch(ARCH / name, list(overrides))))
