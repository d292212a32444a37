"""Time in integer picoseconds, and clocks that turn cycles into it.

SystemC's default resolution is one picosecond; we use the same grid so that a DRAM at
tCK = 833 ps and a core at 1,000 ps live in one simulation without rounding drift. A clock
whose period is not a whole number of picoseconds (1,200 MHz: 833 1/3 ps) keeps its period
exactly, as a fraction: cycle n's edge is the first picosecond at or after n periods, and a
wait of n cycles from any time is rounded up to the picosecond. Such a run drifts at most a
picosecond per wait behind the exact clock (a few in 10^4 of a cycle per event); whole-
picosecond clocks, the usual case, do not round at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real

from desim.errors import ConfigError

PS_PER_NS = 1_000
PS_PER_S = 1_000_000_000_000


@dataclass(frozen=True)
class Clock:
    """A clock domain: `period_ps` picoseconds a cycle, a whole number or an exact fraction."""

    period_ps: int | Fraction
    name: str = "clk"

    def __post_init__(self) -> None:
        period = self.period_ps
        if isinstance(period, Fraction) and period.denominator == 1:
            object.__setattr__(self, "period_ps", period := int(period))
        if not isinstance(period, int | Fraction) or isinstance(period, bool):
            # a float is not exact: 833.33 would drift from 1,200 MHz's 833 1/3
            raise ConfigError(f"clock {self.name!r}: period must be an int or a Fraction of "
                              f"picoseconds (a float is not exact: use Clock.from_mhz or "
                              f"Fraction), got {period!r} (a {type(period).__name__})")
        if period < 1:
            raise ConfigError(f"clock {self.name!r}: period must be a picosecond or more (a "
                              f"clock of 1,000,000 MHz or less), got {float(period):.4g} ps")

    @classmethod
    def from_mhz(cls, mhz: float, name: str = "clk") -> Clock:
        """A clock of `mhz` MHz, as written (1200.5 is 12005/10 MHz exactly)."""
        if not finite_number(mhz) or mhz <= 0:
            raise ConfigError(f"clock {name!r}: frequency must be a finite number of MHz, "
                              f"above 0, got {mhz!r}")
        return cls(Fraction(1_000_000) / Fraction(str(mhz)), name)

    @property
    def frequency_hz(self) -> float:
        return float(PS_PER_S / self.period_ps)

    def cycles(self, n: int) -> int:
        """Picoseconds taken by `n` whole cycles (rounded up to the picosecond)."""
        return math.ceil(int(n) * self.period_ps)

    def to_cycles(self, ps: int) -> float:
        return float(ps / self.period_ps)

    def cycles_until(self, ps: int) -> int:
        """The cycles up to time `ps`, the last one counted whole: the first cycle edge at
        or after `ps` (`cycles_until(cycles(n)) == n`)."""
        return cycles_until(ps, self.period_ps)


def cycles_until(ps: int, period_ps: int | Fraction) -> int:
    """The first edge n at or after `ps` of a clock whose edge n is at ceil(n x period):
    the least n with n x period > ps - 1 (for a whole period, ceil(ps / period))."""
    if isinstance(period_ps, int):
        return -(-ps // period_ps)
    return 0 if ps <= 0 else math.floor((ps - 1) / period_ps) + 1


def finite_number(value: object) -> bool:
    """Whether `value` is a real, finite number, not a bool (a rate, a latency, a
    frequency: NaN passed every `<` check, and True was taken for 1)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def transfer_ps(nbytes: int, bytes_per_s: float) -> int:
    """Picoseconds to move `nbytes` at `bytes_per_s`, rounded up to the next picosecond;
    exact for any rate (a fractional one, 2.5 B/s, as the exact value of its float)."""
    if nbytes <= 0:
        return 0
    rate = int(bytes_per_s)
    if rate == bytes_per_s:  # whole bytes a second, every clock's link: integers alone
        return -(-int(nbytes) * PS_PER_S // rate)
    return math.ceil(int(nbytes) * PS_PER_S / Fraction(bytes_per_s))
