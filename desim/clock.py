"""Time in integer picoseconds, and clocks that turn cycles into it.

SystemC's default resolution is one picosecond; we use the same grid so that a DRAM at
tCK = 833 ps and a core at 1,000 ps live in one simulation without rounding drift. A clock
whose period is not a whole number of picoseconds is refused at elaboration.
"""

from __future__ import annotations

from dataclasses import dataclass

from desim.errors import ConfigError

PS_PER_NS = 1_000
PS_PER_S = 1_000_000_000_000
# Periods (ps) of the whole-MHz clocks that fall on the picosecond grid: the divisors of
# 1,000,000 (2^6 x 5^6).
WHOLE_MHZ_PERIODS_PS = tuple(2**i * 5**j for i in range(7) for j in range(7))


@dataclass(frozen=True)
class Clock:
    """A clock domain: `period_ps` picoseconds a cycle."""

    period_ps: int
    name: str = "clk"

    def __post_init__(self) -> None:
        if not isinstance(self.period_ps, int) or self.period_ps <= 0:
            raise ConfigError(f"clock {self.name!r}: period must be a positive whole number of "
                              f"picoseconds, got {self.period_ps!r}")

    @classmethod
    def from_mhz(cls, mhz: float, name: str = "clk") -> Clock:
        """A clock of `mhz` MHz; its period must fall on the picosecond grid."""
        period = 1_000_000 / mhz
        if abs(period - round(period)) > 1e-9:
            near = sorted({1_000_000 // d for d in WHOLE_MHZ_PERIODS_PS},
                          key=lambda f: (abs(f - mhz), f))[:2]
            raise ConfigError(f"clock {name!r}: {mhz} MHz gives a period of {period:.4f} ps, "
                              "not a whole number of picoseconds; choose a frequency that "
                              "divides 1,000,000 MHz (the nearest: "
                              f"{' or '.join(f'{f:,} MHz' for f in sorted(near))})")
        return cls(int(round(period)), name)

    @property
    def frequency_hz(self) -> float:
        return PS_PER_S / self.period_ps

    def cycles(self, n: int) -> int:
        """Picoseconds taken by `n` whole cycles."""
        return int(n) * self.period_ps

    def to_cycles(self, ps: int) -> float:
        return ps / self.period_ps


def transfer_ps(nbytes: int, bytes_per_s: float) -> int:
    """Picoseconds to move `nbytes` at `bytes_per_s`, rounded up to the next picosecond."""
    if nbytes <= 0:
        return 0
    return -(-int(nbytes) * PS_PER_S // int(bytes_per_s))
