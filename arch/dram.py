"""Transaction-level DRAM timing and energy: one call times a whole transaction of many bursts.

What is modelled
----------------
* One channel (`DramChannelModel`) of one rank: per-bank open-row state, the time each bank
  may next be activated or precharged, the command/data bus, and the activation window. A
  transaction (a contiguous byte range) is cut into bursts of `bytes_per_burst`; the bursts are
  placed by an `AddressMapping` and timed in one call, without per-burst events:
    - column commands (CAS) issue in order, one every tCCD_S (next burst in another bank group)
      or tCCD_L (same bank group), but never faster than the data bus, BL/2 tCK a burst (DDR);
    - a burst whose row is not open needs an ACT, tRCD before its CAS; a different open row in
      that bank needs a PRE first, tRP before the ACT, no earlier than tRAS after the bank's last
      ACT, tRTP after its last read CAS, and tWR after its last write data (write recovery);
    - ACTs issue in stream order, tRRD_S/tRRD_L apart (other/same bank group), at most four in
      any tFAW window, as early as the bank and those limits allow (ideal look-ahead within the
      transaction and over the queue of earlier transactions), never before the request arrives;
    - CL (reads) or CWL (writes) is paid once at the start of a pipelined stream: the transaction
      ends when the last data beat of its last burst is on the bus;
    - between transactions: tCCD/bus spacing for the same direction, tWTR_S from the last write
      data to a read CAS and tWTR_L from the last write data in the read CAS's bank group,
      and a bus turnaround from read data to write data (a write CAS
      CL + BL/2 - CWL + `read_to_write` after the read CAS; DDR4's 2 tCK, LPDDR4's JEDEC
      rule); LPDDR4's write data starts tDQSS after CWL, so tWTR and tWR count from later.
  The only Python loops are over channels, banks and row visits (one per ACT), never over
  bursts or bytes: a contiguous range's bursts in one channel, and in one bank of it, are
  contiguous ranges of an index with those address fields taken out (`_Squeeze`), found by
  bit arithmetic from the range's ends, and the CAS spacing's sum of gaps is in closed form.
  A 1 MiB sequential transaction on one channel takes 0.26-0.86 ms (DDR4, LPDDR4, HBM2: more
  ACTs, more time), a quarter to three fifths of what decoding and sorting each burst took
  (1.0-2.1 ms, side by side on a busy machine).
* Page policy "open" (rows stay open between transactions; row hits are reused) or "closed"
  (every bank the transaction opened is precharged after its last burst).
* Refresh as an average overhead, not as windows: each transaction's busy time on the channel
  (from max(arrival, previous data end) to its last data beat) is stretched by the refresh
  fraction, stall = busy * tRFC / (tREFI - tRFC) (integer floor), i.e. refresh takes tRFC of
  every tREFI of busy time and hides in idle time. Refresh energy is priced per elapsed time.
* `DramSystem`: several channels; a transaction is split over them by the mapping and the
  results combined (end = the latest channel's end).
* Energy from IDD currents by Micron's DDR4 method (TN-40-07): see `DramEnergy`.
* Power-down (`dram.power_down`; "off" by default, as gem5's `enable_dram_powerdown`: it
  costs time): once no transaction has been queued for `power_down_idle_cycles`, and the
  last one allows it (a write's recovery, tWRPDEN; a read's data and a tCK, tRDPDEN), the
  controller drops CKE and every channel draws a power-down current instead of the active
  standby IDD3N until the next transaction. The channels stay down at least tCKE; the next
  transaction waits for that, then tXP for the exit, before its first command. "active":
  rows stay open, IDD3P. "precharge": the open rows are closed first (a
  PRE each, in the idle time, tRP before the bank may activate again), IDD2P; the next
  transaction then opens its rows again. Refresh is still priced over all elapsed time.

What is not modelled
--------------------
No command-level scheduler or command bus contention (one command a cycle is assumed free), no
FR-FCFS reordering within a transaction beyond open-row reuse (ACTs issue in stream order), no
request queue limits, no ranks, no self refresh, no per-bank refresh, no I/O or termination energy
(IDD core currents only), and for LPDDR4 only the VDD2 rail (VDD1 and VDDQ are left out).
No overlap of transactions: the controller serves one to its last data beat before taking
the next, and each requester (the fetch, the write-back) has one in flight, so each pays its
CL (CWL) and first ACT again, which a controller with several requests queued would hide
under the data before. Tile-sized transfers so fall short of the streaming bandwidth (over
HBM2's 8 channels, 16 KiB ones reach 177 of 239 GB/s, 4 KiB ones 50%; one DDR4 channel,
4 KiB ones 93%), the larger share the more channels a transfer is split over.
Beside DRAMsim3 (benchmarks/DRAMSIM3.md, DDR4-2400, the same timings): a transaction on an
idle channel takes DRAMsim3's time to the cycle, less its 2-cycle front end and plus the
refresh stretch (4.7% under tREFI; a 1 MiB stream within 0.6%); tiles from 16 KiB on
within 2%, 4 KiB tiles 20% longer (the queue and reordering DRAMsim3 has).
LPDDR4-3200 the same to the cycle but for JESD209-4's rules, which DRAMsim3 leaves out and
DRAMSys applies: READ to WRITE RL + RU(tDQSCKmax/tCK) + BL/2 - WL + tWPRE + RD(tRPST) (7 tCK
more than DRAMsim3's turnaround, 6 more than DDR4's 2 tCK), and the write data tDQSS
(1 tCK) after WL, so a write ends a tCK later and WRITE to READ and to PRECHARGE are one tCK
longer (WL + 1 + BL/2 + tWTR, WL + BL/2 + tWR + 1). HBM2: its ACTs come tRRD_S = 2 bursts
apart, so in-order CAS issue costs a transaction on idle banks 6 cycles that DRAMsim3's
reordering saves; 1 MiB within 1.3%.

Sources
-------
* DDR4-2400: DRAMsim3 configs/DDR4_8Gb_x8_2400.ini as it was until its commit 7985fa0
  (August 2017: Micron MT40A1G8PM-083E's CL16 bin, JEDEC JESD79-4); the file has held the
  CL17 bin since 0ee9f69 (CL 17, CWL 12, tRCD and tRP 17; benchmarks/DRAMSIM3.md).
* LPDDR4-3200: RL 28 and WL 14 (JESD209-4, read DBI off, WL set A), tRCD/tRP 18 ns, tRAS
  42 ns and tWR 18 ns (JESD209-4) converted with ceil at tCK 0.625 ns (as DRAMSys's
  JEDEC_8Gb_LPDDR4-3200_16bit memspec); the other timings from Ramulator's LPDDR4_3200
  preset (src/LPDDR4.h, 8Gb x16 die in src/LPDDR4.cpp); currents from DRAMSys
  configs/memspec/JEDEC_8Gb_LPDDR4-3200_16bit.json.
* HBM2: DRAMsim3 configs/HBM2_8Gb_x128.ini as DRAMsim3 reads it (a 2 KB row, JESD235's
  legacy-mode page).
* Energy: Micron TN-40-07, "Calculating Memory Power for DDR4 SDRAM".

Time is integer picoseconds everywhere; currents are mA, voltages V, energy pJ (mA*V*ns = pJ).
"""

from __future__ import annotations

import bisect
import functools
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import simpy

from desim.errors import ConfigError
from desim.module import Module

if TYPE_CHECKING:
    from arch.config import DramConfig

PS_PER_NS = 1_000
PS_PER_S = 1_000_000_000_000
_NEVER = -(1 << 60)  # "long ago": a time before any constraint


@dataclass(frozen=True)
class DramTiming:
    """Timing, organisation and currents of one DRAM channel (one rank).

    Timings are in tCK cycles; `tck_ps` is the clock period on the picosecond grid. Geometry is
    per channel: `bus_width_bits` wide, made of `bus_width_bits // device_width_bits` chips
    (the IDD currents are per chip, as in data sheets). `idd5ab` is the burst refresh current
    (IDD5B in Micron data sheets; DRAMsim3 calls it IDD5AB).
    """

    name: str
    tck_ps: int
    cl: int
    cwl: int
    trcd: int
    trp: int
    tras: int
    trfc: int
    trefi: int
    trrd_s: int
    trrd_l: int
    twtr_s: int
    twtr_l: int
    tfaw: int
    twr: int
    tccd_s: int
    tccd_l: int
    burst_length: int
    bus_width_bits: int
    device_width_bits: int
    bank_groups: int
    banks_per_group: int
    rows: int
    columns: int
    channels: int = 1
    vdd: float | None = None
    idd0: float | None = None
    idd2n: float | None = None
    idd3n: float | None = None
    idd4r: float | None = None
    idd4w: float | None = None
    idd5ab: float | None = None
    idd2p: float | None = None  # precharge power-down current (CKE low, all banks closed)
    idd3p: float | None = None  # active power-down current (CKE low, a row open)
    txp: int | None = None      # power-down exit to the next valid command
    tcke: int = 0               # CKE's least time low: a power-down lasts at least this
    trtp: int = 0               # a read CAS to the precharge of its bank
    # A write CAS after a read CAS waits CL + BL/2 - CWL + this: the bus turnaround from
    # the read's data to the write's (JESD79-4's 2 tCK with a 1 tCK write preamble).
    read_to_write: int = 2
    tdqss: int = 0              # the write data starts tDQSS after CWL (LPDDR4: 1 tCK)
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.tck_ps, int) or self.tck_ps <= 0:
            raise ConfigError(f"DRAM {self.name!r}: tck_ps must be a positive int of picoseconds")
        for name in ("bank_groups", "banks_per_group", "rows", "channels"):
            if not _is_pow2(getattr(self, name)):
                raise ConfigError(f"DRAM {self.name!r}: {name} must be a power of two")
        if self.burst_length % 2 or not _is_pow2(self.columns // self.burst_length):
            raise ConfigError(f"DRAM {self.name!r}: columns/burst_length must be a power of two "
                              "and the burst length even (double data rate)")
        if self.bus_width_bits % self.device_width_bits:
            raise ConfigError(f"DRAM {self.name!r}: bus width is not a multiple of chip width")
        if not _is_pow2(self.bytes_per_burst):
            raise ConfigError(f"DRAM {self.name!r}: bytes per burst must be a power of two")
        if self.trfc >= self.trefi:
            raise ConfigError(f"DRAM {self.name!r}: tRFC must be shorter than tREFI")

    @property
    def banks(self) -> int:
        return self.bank_groups * self.banks_per_group

    @property
    def chips_per_rank(self) -> int:
        return self.bus_width_bits // self.device_width_bits

    @property
    def bytes_per_burst(self) -> int:
        return self.burst_length * self.bus_width_bits // 8

    @property
    def burst_cycles(self) -> int:
        """Data-bus cycles a burst occupies: BL/2 (two beats a clock)."""
        return self.burst_length // 2

    @property
    def burst_ps(self) -> int:
        return self.burst_cycles * self.tck_ps

    @property
    def trc(self) -> int:
        return self.tras + self.trp

    @property
    def peak_bandwidth_bytes_per_s(self) -> float:
        """Peak data-bus bandwidth of one channel, from the integer-ps tCK."""
        return self.bytes_per_burst * PS_PER_S / self.burst_ps

    @property
    def row_bytes(self) -> int:
        """Bytes of one row across the channel (the row-buffer size of a rank)."""
        return self.columns * self.bus_width_bits // 8

    @property
    def bursts_per_row(self) -> int:
        return self.columns // self.burst_length

    @property
    def channel_bytes(self) -> int:
        return self.banks * self.rows * self.row_bytes

    def ps(self, cycles: int) -> int:
        """`cycles` tCK in picoseconds."""
        return cycles * self.tck_ps


def _is_pow2(x: int) -> bool:
    return isinstance(x, int) and x > 0 and x & (x - 1) == 0


def _ns_to_ck(ns: float, tck_ps: int) -> int:
    """ns to whole clock cycles, rounded up (ceil), on the picosecond grid."""
    return -(-round(ns * PS_PER_NS) // tck_ps)


_LP4_TCK = 625
PRESETS: dict[str, DramTiming] = {
    "DDR4-2400": DramTiming(
        name="DDR4-2400",
        # 1200 MHz: the data sheet's 0.833 ns (0.8333... ns) rounded to 833 ps on the ps grid, so
        # this channel runs 0.04 % fast: peak 19.208 GB/s instead of 19.2 GB/s.
        tck_ps=833,
        cl=16, cwl=16, trcd=16, trp=16, tras=39, trfc=420, trefi=9364,
        trrd_s=4, trrd_l=6, twtr_s=3, twtr_l=9, tfaw=26, twr=19, tccd_s=4, tccd_l=6,
        burst_length=8, bus_width_bits=64, device_width_bits=8,
        bank_groups=4, banks_per_group=4, rows=65536, columns=1024, channels=1,
        vdd=1.2, idd0=48, idd2n=34, idd3n=43, idd4r=135, idd4w=123, idd5ab=250,
        idd2p=25, idd3p=37, txp=8, tcke=6,  # tCKE max(3 tCK, 5 ns), DRAMsim3's file too
        trtp=9,  # max(4 tCK, 7.5 ns), JESD79-4; DRAMsim3's file has 9 too
        source="DRAMsim3 configs/DDR4_8Gb_x8_2400.ini as it was until 7985fa0 (2017; Micron"
               " MT40A1G8PM-083E 8Gb x8, its CL16 bin, JESD79-4; the file has the CL17 bin"
               " since, CL 17, CWL 12, tRCD and tRP 17); a 64-bit rank of 8 chips",
    ),
    "LPDDR4-3200": DramTiming(
        name="LPDDR4-3200",
        tck_ps=_LP4_TCK,  # 1600 MHz, exactly 0.625 ns
        # RL 28 (read DBI off; 32 with it), WL 14 (JESD209-4's set A at 3200 Mb/s; set B 26)
        cl=28, cwl=14,
        trcd=_ns_to_ck(18, _LP4_TCK), trp=_ns_to_ck(18, _LP4_TCK), tras=_ns_to_ck(42, _LP4_TCK),
        trfc=288, trefi=6247,  # tRFCab 180 ns (8Gb die), tREFI 3.9 us
        trrd_s=16, trrd_l=16, twtr_s=16, twtr_l=16, tfaw=64, tccd_s=8, tccd_l=8,
        twr=_ns_to_ck(18, _LP4_TCK),  # tWR max(18 ns, 6 tCK), JESD209-4
        burst_length=16, bus_width_bits=16, device_width_bits=16,
        bank_groups=1, banks_per_group=8, rows=32768, columns=1024, channels=2,
        # VDD2 rail only (VDD1 1.8 V and VDDQ ignored); idd5ab is the refresh burst current IDD52.
        vdd=1.1, idd0=45, idd2n=27, idd3n=30, idd4r=275, idd4w=210, idd5ab=90,
        idd2p=3, idd3p=9, txp=12,  # DRAMSys: idd2p2, idd3p2 (VDD2) and XP
        tcke=_ns_to_ck(7.5, _LP4_TCK),  # max(7.5 ns, 4 tCK), JESD209-4
        trtp=12,  # max(8 tCK, 7.5 ns), JESD209-4
        # JESD209-4 READ to WRITE: RL + RU(tDQSCKmax/tCK) + BL/2 - WL + tWPRE + RD(tRPST),
        # tDQSCKmax 3.5 ns (6 tCK), tWPRE 2 tCK, tRPST 0.5 tCK (0); write data tDQSS (1 tCK,
        # nominal) after WL: DRAMSys's memspec JEDEC_8Gb_LPDDR4-3200_16bit (DQSCK 6, WPRE 2,
        # RPST 0, DQSS 1) and CheckerLPDDR4 (tRDWR, tWRRD, tWRPRE)
        read_to_write=_ns_to_ck(3.5, _LP4_TCK) + 2 + 0, tdqss=1,
        source="RL 28, WL 14, tRCD/tRP 18 ns, tRAS 42 ns, tWR 18 ns (JESD209-4, ceil at"
               " 0.625 ns; DRAMSys configs/memspec/JEDEC_8Gb_LPDDR4-3200_16bit.json has the"
               " same); other timings and the 8Gb x16 organisation (two 16-bit channels a die)"
               " from Ramulator's LPDDR4_3200 preset (src/LPDDR4.h, src/LPDDR4.cpp); VDD2"
               " currents from that DRAMSys file",
    ),
    "HBM2": DramTiming(
        name="HBM2",
        tck_ps=1000,
        cl=14, cwl=4, trcd=14, trp=14, tras=34, trfc=260, trefi=3900,
        trrd_s=4, trrd_l=6, twtr_s=6, twtr_l=8, tfaw=30, twr=16, tccd_s=1, tccd_l=2,
        burst_length=4, bus_width_bits=128, device_width_bits=128,
        # a 2 KB row (page) of the 128-bit legacy channel (JESD235; gem5's HBM_1000_4H_1x128,
        # device_rowbuffer_size 2kB): 128 columns of 128 bits. The DRAMsim3 file says 64, which
        # DRAMsim3 doubles for HBM (a column there is two device widths, the 2n prefetch), so
        # its 8Gb channel is 1 GB, as the file's channel_size says.
        bank_groups=4, banks_per_group=4, rows=32768, columns=128, channels=8,
        vdd=1.2, idd0=65, idd2n=40, idd3n=55, idd4r=390, idd4w=500, idd5ab=250,
        idd2p=28, idd3p=40, txp=8, tcke=8,
        trtp=6,  # that file's tRTP_L (a bank's own group)
        source="DRAMsim3 configs/HBM2_8Gb_x128.ini (8 legacy 128-bit channels a stack; tWTR,"
               " IDD2N, IDD2P, IDD3P, IDD5AB and tXP also from that file); currents per channel",
    ),
}


# ---------------------------------------------------------------------------------------------
# Address mapping
# ---------------------------------------------------------------------------------------------

class DramCoord(NamedTuple):
    """Where a burst lives. `column` is the device column of the burst's first beat (a multiple
    of the burst length)."""

    channel: int
    bankgroup: int
    bank: int
    row: int
    column: int


DEFAULT_SCHEME = "ro:ba:co:bg:ch"
_FIELDS = ("ro", "ba", "bg", "co", "ch")


class AddressMapping:
    """Byte address -> (channel, bank group, bank, row, column), by bit fields.

    `scheme` lists the fields most significant first, e.g. "ro:ba:co:bg:ch" (the default):
    below all of them sit the byte-offset bits of one burst. Field widths are log2 of channels,
    bank groups, banks a group, rows, and bursts a row (columns / burst length); a field of size
    one has no bits. The default puts the channel and then the bank group just above the burst
    offset, so a sequential stream spreads over channels at burst granularity and, within a
    channel, alternates bank groups burst by burst (tCCD_S applies, not tCCD_L); a row of each
    bank group is streamed before the next bank, and rows change last.
    """

    def __init__(self, timing: DramTiming, scheme: str = DEFAULT_SCHEME,
                 channels: int | None = None):
        self.timing = timing
        self.channels = timing.channels if channels is None else channels
        if not _is_pow2(self.channels):
            raise ConfigError(f"address mapping: channels must be a power of two, got {channels}")
        fields = tuple(f.strip().lower() for f in scheme.split(":"))
        if sorted(fields) != sorted(_FIELDS):
            raise ConfigError(f"address mapping {scheme!r}: must name each of "
                              f"{', '.join(_FIELDS)} exactly once, separated by ':'")
        self.scheme = scheme
        self.fields = fields
        sizes = {"ch": self.channels, "bg": timing.bank_groups, "ba": timing.banks_per_group,
                 "ro": timing.rows, "co": timing.bursts_per_row}
        self.bits = {name: size.bit_length() - 1 for name, size in sizes.items()}
        self.offset_bits = timing.bytes_per_burst.bit_length() - 1
        self.shift: dict[str, int] = {}
        shift = self.offset_bits
        for name in reversed(fields):  # least significant first
            self.shift[name] = shift
            shift += self.bits[name]
        self.address_bits = shift
        # A burst's index is its address >> offset_bits. A channel's own ("local") burst index
        # is that with the channel field taken out: its bursts in address order are
        # consecutive local indices (`_Squeeze.bounds`), the other fields bit fields of it.
        def burst_field(name: str) -> tuple[int, int]:  # (shift, bits) in the burst index
            return self.shift[name] - self.offset_bits, self.bits[name]
        self._channel_squeeze = _Squeeze([burst_field("ch")])
        self._channel_patterns = [c << self._channel_squeeze.shift for c in range(self.channels)]
        self.local_shift = {name: self._channel_squeeze.squeezed_shift(burst_field(name)[0])
                            for name in ("bg", "ba", "co", "ro")}
        # The same for a bank: the bank group and bank fields out of a local burst index give
        # the bank's own burst index (its bursts in address order are consecutive values),
        # whose fields are the column and the row. `banks`: (flat bank, bank group, the
        # fields' bits in a local burst index) of every bank.
        self.bank_squeeze = _Squeeze([(self.local_shift[name], self.bits[name])
                                       for name in ("bg", "ba")])
        self.banks = [(bg * timing.banks_per_group + ba, bg,
                       bg << self.local_shift["bg"] | ba << self.local_shift["ba"])
                      for bg in range(timing.bank_groups) for ba in range(timing.banks_per_group)]
        self.bank_patterns = [pattern for _, _, pattern in self.banks]
        self.bank_row_shift = self.bank_squeeze.squeezed_shift(self.local_shift["ro"])

    @property
    def capacity_bytes(self) -> int:
        return 1 << self.address_bits

    def _field(self, address, name: str):
        return (address >> self.shift[name]) & ((1 << self.bits[name]) - 1)

    def decode(self, address: int) -> DramCoord:
        if not 0 <= address < self.capacity_bytes:
            raise ValueError(f"address {address:#x} outside 0..{self.capacity_bytes:#x}")
        return DramCoord(
            channel=self._field(address, "ch"), bankgroup=self._field(address, "bg"),
            bank=self._field(address, "ba"), row=self._field(address, "ro"),
            column=self._field(address, "co") * self.timing.burst_length)

    def encode(self, coord: DramCoord) -> int:
        """The byte address of the first byte of the burst at `coord`."""
        bl = self.timing.burst_length
        if coord.column % bl:
            raise ValueError(f"column {coord.column} is not a multiple of the burst length {bl}")
        values = {"ch": coord.channel, "bg": coord.bankgroup, "ba": coord.bank, "ro": coord.row,
                  "co": coord.column // bl}
        address = 0
        for name, value in values.items():
            if not 0 <= value < 1 << self.bits[name]:
                raise ValueError(f"{name} = {value} out of range for {self.timing.name}")
            address |= value << self.shift[name]
        return address

    def _burst_range(self, address: int, nbytes: int) -> tuple[int, int]:
        """The first and last burst index (address >> offset_bits) of bytes [address,
        address + nbytes), which must be a non-empty range inside the address space."""
        if nbytes <= 0 or address < 0 or address + nbytes > self.capacity_bytes:
            raise ValueError(f"bytes [{address:#x}, {address + nbytes:#x}) are not a non-empty "
                             f"range inside the {self.capacity_bytes:#x}-byte address space")
        return address >> self.offset_bits, (address + nbytes - 1) >> self.offset_bits

    def decode_bursts(self, address: int, nbytes: int) -> dict[str, np.ndarray]:
        """Channel, flat bank (bank group * banks a group + bank), bank group and row of every
        burst touched by bytes [address, address + nbytes), as int64 arrays in address order.
        The timing does not decode each burst (`channel_ranges`, `_Squeeze.bounds`); this is
        the reference the tests hold that arithmetic to."""
        first, last = self._burst_range(address, nbytes)
        bursts = np.arange(first, last + 1, dtype=np.int64)  # addresses >> offset_bits

        def field(name: str) -> np.ndarray:
            if not self.bits[name]:  # one value, no bits (one channel, one bank group)
                return np.zeros(len(bursts), dtype=np.int64)
            return (bursts >> (self.shift[name] - self.offset_bits)) & ((1 << self.bits[name]) - 1)

        bg = field("bg")
        return {"ch": field("ch"), "bank": bg * self.timing.banks_per_group + field("ba"),
                "bg": bg, "row": field("ro")}

    def channel_ranges(self, address: int, nbytes: int) -> list[tuple[int, int, int]]:
        """The channels that bytes [address, address + nbytes) touch, in channel order, each as
        (channel, first, last): its bursts are local burst indices first..last (inclusive)."""
        first, last = self._burst_range(address, nbytes)
        squeeze = self._channel_squeeze
        bounds = squeeze.bounds(first, last, self._channel_patterns)
        return [(c, squeeze(lo), squeeze(hi)) for c, (lo, hi) in enumerate(bounds) if lo <= hi]


class _Squeeze:
    """Takes bit fields out of integers (the bits above each one move down to close the gap),
    and back.

    The address mapping uses it twice: the channel field out of a burst index gives a
    channel's local burst index, and the bank group and bank fields out of that give a
    bank's own burst index, whose bit fields are the column and the row.
    """

    def __init__(self, fields: list[tuple[int, int]]):
        """`fields`: (shift, bits) of each field taken out; fields of no bits are ignored."""
        fields = sorted((s, w) for s, w in fields if w)
        self.mask = sum(((1 << w) - 1) << s for s, w in fields)
        self.shift = fields[0][0] if fields else 0  # the lowest field's
        # The bits kept, as runs (shift in x, mask, shift squeezed); the top run is every bit
        # above the top field (mask -1: no upper bound).
        self._kept: list[tuple[int, int, int]] = []
        at = squeezed = 0
        for s, w in fields:
            if s > at:
                self._kept.append((at, (1 << (s - at)) - 1, squeezed))
                squeezed += s - at
            at = s + w
        self._kept.append((at, -1, squeezed))

    def squeezed_shift(self, shift: int) -> int:
        """Where bit `shift` of x (not in a field taken out) lands: the kept bits below it."""
        return shift - bin(self.mask & ((1 << shift) - 1)).count("1")

    def __call__(self, x: int) -> int:
        out = 0
        for s, mask, t in self._kept:
            out |= ((x >> s) & mask) << t
        return out

    def expand(self, m: int) -> int:
        """The x that squeezes to `m`, with the fields taken out all zero."""
        out = 0
        for s, mask, t in self._kept:
            out |= ((m >> t) & mask) << s
        return out

    def bounds(self, lo: int, hi: int, patterns: list[int]) -> list[tuple[int, int]]:
        """For each pattern, the first and last x in lo..hi whose taken-out fields hold it
        (x & mask == pattern); first > last where there is none. Between them, those x
        squeeze to consecutive integers (squeezing keeps their order, and every squeezed
        value comes from one x with the pattern), so they need not be enumerated.

        The first, from lo (the last, from hi, is the mirror image): lo itself if it holds
        the pattern. Otherwise let p be the highest bit where lo and the pattern differ (a
        bit of the fields). An x with the pattern and lo's kept bits above p is above lo
        exactly when the pattern has the 1 at p (integers compare at their highest differing
        bit), whatever its bits below p: the first such x has its kept bits below p zero.
        Else x must exceed lo in the kept bits above p: add one to them (setting the field
        bits and the bits below p to ones first, so that the carry runs through them to the
        next kept bit, leaving the bits below p zero).
        """
        mask = self.mask
        lo_bits, hi_bits = lo & mask, hi & mask
        out = []
        for pattern in patterns:
            if pattern == lo_bits:
                first = lo
            else:
                below = (1 << ((pattern ^ lo_bits).bit_length() - 1)) - 1  # the bits below p
                if pattern > lo_bits:
                    first = lo & ~(mask | below) | pattern
                else:
                    first = ((lo | mask | below) + 1) & ~mask | pattern  # below p: 0s
            if pattern == hi_bits:
                last = hi
            else:  # the mirror image: the kept bits below p ones; less one above p (borrow)
                below = (1 << ((pattern ^ hi_bits).bit_length() - 1)) - 1
                if pattern < hi_bits:
                    last = (hi | below) & ~mask | pattern
                else:
                    last = ((hi & ~(mask | below)) - 1) & ~mask | pattern
            out.append((first, last))
        return out


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DramAccess:
    """The outcome of one transaction. `row_misses` counts bursts that needed an ACT (empty bank
    or another row open), so row_hits + row_misses == bursts; `activates` counts ACT commands
    (equal to row_misses) and `precharges` PRE commands (row conflicts, plus in closed-page mode
    the precharge of every bank the transaction opened)."""

    start_ps: int
    end_ps: int
    bursts: int
    bytes: int
    is_write: bool
    row_hits: int
    row_misses: int
    activates: int
    precharges: int

    @property
    def elapsed_ps(self) -> int:
        return self.end_ps - self.start_ps

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bytes * PS_PER_S / self.elapsed_ps if self.elapsed_ps else 0.0

    @property
    def actions(self) -> dict[str, int]:
        """Counts for `DramEnergy.price`."""
        return {"activates": self.activates, "precharges": self.precharges,
                "read_bursts": 0 if self.is_write else self.bursts,
                "write_bursts": self.bursts if self.is_write else 0}


PagePolicy = Literal["open", "closed"]


@dataclass
class _Bus:
    last_cas_ps: int | None = None
    last_cas_bg: int = -1
    last_write: bool = False
    data_end_ps: int = _NEVER
    last_act_ps: int = _NEVER
    last_act_bg: int = -1
    acts: deque[int] = field(default_factory=lambda: deque(maxlen=4))
    # per bank group, the end of the last write data there: a read CAS in that group waits
    # tWTR_L after it (in another group tWTR_S after the last write's data, `data_end_ps`)
    write_end_by_bg: dict[int, int] = field(default_factory=dict)


class DramChannelModel:
    """One DRAM channel: times whole transactions (see the module docstring for the rules).

    Transactions are served in call order; a transaction whose `start_ps` comes before the
    channel is free queues behind the earlier ones (its ACTs may still issue early).
    """

    def __init__(self, timing: DramTiming, mapping: AddressMapping | None = None,
                 page_policy: PagePolicy = "open", refresh: bool = True):
        if page_policy not in ("open", "closed"):
            raise ConfigError(f"page_policy must be 'open' or 'closed', got {page_policy!r}")
        self.timing = timing
        self.mapping = mapping if mapping is not None else AddressMapping(timing, channels=1)
        self.page_policy = page_policy
        self.refresh = refresh
        # Per bank: open row (-1: closed), last ACT, earliest PRE (tRAS, last read CAS, write
        # recovery), earliest ACT while closed (PRE + tRP). Plain lists: the ACT loop is hot.
        self._open_row = [-1] * timing.banks
        self._act_ps = [_NEVER] * timing.banks
        self._pre_ready_ps = [_NEVER] * timing.banks
        self._act_ready_ps = [_NEVER] * timing.banks
        self._bus = _Bus()
        t = timing
        self._tb = t.burst_ps
        self._gap_s = max(t.ps(t.tccd_s), self._tb)  # CAS to CAS, other bank group
        self._gap_l = max(t.ps(t.tccd_l), self._tb)  # CAS to CAS, same bank group
        self._write_data_ps = t.ps(t.cwl + t.tdqss)  # a write CAS to its first data beat
        # the ACT rules in picoseconds: tRAS, tRP, tRCD, tFAW, tRRD_S, tRRD_L
        self._act_rules_ps = tuple(t.ps(c) for c in (t.tras, t.trp, t.trcd, t.tfaw, t.trrd_s,
                                                     t.trrd_l))
        self._cas_to_pre_ps = {False: self._cas_to_precharge_ps(False),
                               True: self._cas_to_precharge_ps(True)}

    def close_rows(self, at_ps: int) -> int:
        """Precharge every open row at `at_ps` (or as soon after as its bank allows; before
        a precharge power-down); returns the PREs issued."""
        closed = 0
        for b, row in enumerate(self._open_row):
            if row >= 0:
                self._open_row[b] = -1
                self._act_ready_ps[b] = max(at_ps, self._pre_ready_ps[b]) + \
                    self.timing.ps(self.timing.trp)
                closed += 1
        return closed

    def access(self, start_ps: int, address: int, nbytes: int, is_write: bool) -> DramAccess:
        """Time a read or write of bytes [address, address + nbytes) arriving at `start_ps`."""
        if nbytes == 0:
            return DramAccess(start_ps, start_ps, 0, 0, is_write, 0, 0, 0, 0)
        ranges = self.mapping.channel_ranges(address, nbytes)
        if len(ranges) > 1:
            raise ValueError("this transaction spans several channels of the mapping; "
                             "use DramSystem")
        (_, first, last), = ranges
        return self._access_range(start_ps, first, last, nbytes, is_write)

    def _cas_to_precharge_ps(self, is_write: bool) -> int:
        """From a CAS to the earliest PRE of its bank: write recovery after the write's
        data, tRTP after a read."""
        t = self.timing
        return self._write_data_ps + self._tb + t.ps(t.twr) if is_write else t.ps(t.trtp)

    def _first_cas_ps(self, start_ps: int, bg0: int, is_write: bool) -> int:
        """Earliest CAS of a transaction's first burst, from the previous transaction."""
        t, bus = self.timing, self._bus
        if bus.last_cas_ps is None:
            return start_ps
        same_bg = bg0 == bus.last_cas_bg
        if bus.last_write == is_write:
            earliest = bus.last_cas_ps + (self._gap_l if same_bg else self._gap_s)
        elif is_write:  # read -> write: the bus turnaround after the read's data
            earliest = bus.data_end_ps + t.ps(t.read_to_write - t.cwl)
        else:  # write -> read: tWTR_S from the end of the write data (tWTR_L in a bank
            # group the writes used: `_write_to_read`)
            earliest = bus.data_end_ps + t.ps(t.twtr_s)
        return max(earliest, start_ps)

    def _write_to_read(self, banks_here: list[tuple[int, ...]], first_cas_ps: int
                       ) -> list[tuple[int, int]]:
        """A read's bounds from the writes before it: the first burst in each bank group
        that a write used waits tWTR_L after that group's last write data (JESD79-4;
        DRAMsim3's write_to_read_l). As (burst, that bound less G there), in issue order;
        none when the read's first CAS is already late enough for every group.
        `banks_here`: as `_group_ends` takes them."""
        ends = self._bus.write_end_by_bg
        twtr_l = self.timing.ps(self.timing.twtr_l)
        if not ends or max(ends.values()) + twtr_l <= first_cas_ps:
            return []
        return sorted((i, ends[g] + twtr_l - g_i)
                      for g, (i, g_i) in _group_ends(banks_here).items() if g in ends)

    def _access_range(self, start_ps: int, lo: int, hi: int, nbytes: int, is_write: bool
                      ) -> DramAccess:
        """Time the bursts of one transaction on this channel: local burst indices lo..hi
        (`AddressMapping.channel_ranges`), issued in that order. A burst's place in the
        transaction (its "burst" below) is its index less lo."""
        t, bus, mapping = self.timing, self._bus, self.mapping
        open_row, act_at = self._open_row, self._act_ps
        pre_ready, act_ready = self._pre_ready_ps, self._act_ready_ps
        n = hi - lo + 1
        bg_shift, bg_mask = mapping.local_shift["bg"], t.bank_groups - 1
        # CAS spacing: G(k), the sum of the gaps from burst lo to burst k; CAS_i =
        # max(CAS_{i-1} + gap_i, ready_i), i.e. CAS_i = G_i + max over k <= i of
        # (ready_k - G_k), with ready only at ACTed bursts. A gap is tCCD_L's (same bank
        # group) but where the bank group changes, from burst k-1 to k exactly when k is a
        # multiple of 2^bg_shift (then k >> bg_shift grows by one, which changes its low bits,
        # the group's): (k >> bg_shift) - (lo >> bg_shift) times from lo to k. With no bank
        # group bits the group never changes. So G is a sum of gaps without a sum over bursts.
        gap_l = self._gap_l
        gap_change = self._gap_s - gap_l if mapping.bits["bg"] else 0
        lo_groups = lo >> bg_shift

        def G(k: int) -> int:  # at local burst index k
            return (k - lo) * gap_l + ((k >> bg_shift) - lo_groups) * gap_change

        # Row visits (one ACT each), bank by bank: a bank's bursts here run from its first
        # (local index) to its last (`_Squeeze.bounds`), consecutive values of the bank's own
        # burst index (squeeze: the bank fields taken out), of which the row is a bit field;
        # so a new visit starts wherever that index is a multiple of 2^row_shift (as for the
        # bank group above), and there is one only if the bits from the row's up (the kept
        # ones) differ between the first and the last burst.
        squeeze = mapping.bank_squeeze
        row_shift, row_mask = mapping.bank_row_shift, t.rows - 1
        ro_shift = mapping.local_shift["ro"]
        rows_and_up = ~squeeze.mask & -(1 << ro_shift) if mapping.bits["ro"] else 0
        opens = []   # the ACTs: (burst, the burst of its bank before it or -1, bank, group,
                     # row, G at both)
        here = []    # every bank touched: (bank, group, first burst, G there, last burst, G)
        bounds = squeeze.bounds(lo, hi, mapping.bank_patterns)
        for (b, g, pattern), (k_first, k_last) in zip(mapping.banks, bounds, strict=True):
            if k_first > k_last:  # no burst in this bank
                continue
            i, g_i = k_first - lo, G(k_first)
            here.append((b, g, i, g_i, k_last - lo, G(k_last)))
            row = (k_first >> ro_shift) & row_mask
            if open_row[b] != row:  # not a hit on the row an earlier transaction left open
                opens.append((i, -1, b, g, row, g_i, 0))
            if (k_first ^ k_last) & rows_and_up:
                # more rows of this bank: each visit's ACT follows the bank's burst before it
                step = 1 << row_shift
                for m in range((squeeze(k_first) // step + 1) * step, squeeze(k_last) + 1, step):
                    k, k_before = squeeze.expand(m) | pattern, squeeze.expand(m - 1) | pattern
                    opens.append((k - lo, k_before - lo, b, g, (m >> row_shift) & row_mask,
                                  G(k), G(k_before)))
        opens.sort()  # in issue order

        # the bursts carrying a readiness bound, and the running max of (ready_k - G_k) there
        ev_idx = [0]
        ev_max = [self._first_cas_ps(start_ps, (lo >> bg_shift) & bg_mask, is_write)]
        wtr = [] if is_write else self._write_to_read(here, ev_max[0])

        def cas_ps(i: int, g_i: int) -> int:
            return g_i + ev_max[bisect.bisect_right(ev_idx, i) - 1]

        cas_to_pre = self._cas_to_pre_ps[is_write]
        tras, trp, trcd, tfaw, trrd_s, trrd_l = self._act_rules_ps
        acts, last_act, last_bg = bus.acts, bus.last_act_ps, bus.last_act_bg
        bisect_right = bisect.bisect_right
        run_max, precharges = ev_max[0], 0
        # One iteration per ACT (row visit); plain comparisons instead of max() keep it ~1 us.
        for j, p, b, g, r, g_j, g_p in opens:
            while wtr and wtr[0][0] <= j:  # a tWTR_L bound at or before this burst
                k, bound = wtr.pop(0)
                if bound > run_max:
                    run_max = bound
                ev_idx.append(k)
                ev_max.append(run_max)
            if p >= 0:  # another row of this bank was used earlier in this transaction: PRE
                pre = act_at[b] + tras
                after_cas = g_p + ev_max[bisect_right(ev_idx, p) - 1] + cas_to_pre
                act = (pre if pre > after_cas else after_cas) + trp
                precharges += 1
            elif open_row[b] >= 0:  # another row left open by an earlier transaction: PRE
                pre = pre_ready[b]
                act = (pre if pre > start_ps else start_ps) + trp
                precharges += 1
            else:  # bank closed
                act = act_ready[b] if act_ready[b] > start_ps else start_ps
            rrd = last_act + (trrd_l if g == last_bg else trrd_s)
            if rrd > act:
                act = rrd
            if len(acts) == 4 and acts[0] + tfaw > act:
                act = acts[0] + tfaw
            acts.append(act)
            last_act, last_bg = act, g
            act_at[b], open_row[b] = act, r
            ready = act + trcd - g_j
            if ready > run_max:
                run_max = ready
            ev_idx.append(j)
            ev_max.append(run_max)
        for k, bound in wtr:  # those after the last ACT
            if bound > run_max:
                run_max = bound
            ev_idx.append(k)
            ev_max.append(run_max)
        bus.last_act_ps, bus.last_act_bg = last_act, last_bg

        last_cas = cas_ps(n - 1, G(hi))
        data_end = last_cas + (self._write_data_ps if is_write else t.ps(t.cl)) + self._tb

        stall = 0  # refresh's stretch of the busy time; it pushes the state below later too
        if self.refresh:
            busy = data_end - max(start_ps, bus.data_end_ps)
            stall = busy * t.trfc // (t.trefi - t.trfc)

        # Bank state after the transaction: earliest PRE from the last CAS to each bank; in
        # closed-page mode that PRE closes the bank.
        closed = self.page_policy == "closed"
        for b, _, _, _, i, g_i in here:
            pre_ready[b] = max(act_at[b] + tras, cas_ps(i, g_i) + cas_to_pre) + stall
            if closed:
                act_ready[b] = pre_ready[b] + trp
                open_row[b] = -1
            else:
                act_ready[b] += stall
        if closed:
            precharges += len(here)
        if stall:
            for b in {act[2] for act in opens}:  # the banks ACTed
                act_at[b] += stall
            for k in range(max(0, len(acts) - len(opens)), len(acts)):
                acts[k] += stall
            if opens:
                bus.last_act_ps += stall
        bus.last_cas_ps, bus.last_cas_bg = last_cas + stall, (hi >> bg_shift) & bg_mask
        bus.last_write, bus.data_end_ps = is_write, data_end + stall
        if is_write:  # each bank group's last write data, for a later read's tWTR_L
            tail = self._write_data_ps + self._tb + stall
            for g, (i, g_i) in _group_ends(here, last=True).items():
                bus.write_end_by_bg[g] = cas_ps(i, g_i) + tail

        misses = len(opens)
        return DramAccess(start_ps=start_ps, end_ps=data_end + stall, bursts=n, bytes=nbytes,
                          is_write=is_write, row_hits=n - misses, row_misses=misses,
                          activates=misses, precharges=precharges)


def _group_ends(banks_here: list[tuple[int, ...]], last: bool = False
                ) -> dict[int, tuple[int, int]]:
    """Each bank group's first burst (its last with `last`) and G there: the earliest
    (latest) of its banks'. `banks_here`: (bank, group, first burst, G there, last burst, G
    there) of each bank a transaction touched."""
    ends: dict[int, tuple[int, int]] = {}
    for _, g, i, g_i, i_last, g_last in banks_here:
        if last:
            i, g_i = i_last, g_last
        if g not in ends or (i > ends[g][0] if last else i < ends[g][0]):
            ends[g] = (i, g_i)
    return ends


class DramSystem:
    """Several channels behind one address space: a transaction is split over the channels by
    the mapping, each part timed by its channel, and the parts combined (start = arrival, end =
    the latest channel's end, counts summed)."""

    def __init__(self, timing: DramTiming, channels: int | None = None,
                 mapping: AddressMapping | None = None, page_policy: PagePolicy = "open",
                 refresh: bool = True):
        self.timing = timing
        self.channels = timing.channels if channels is None else channels
        self.mapping = mapping if mapping is not None else AddressMapping(timing,
                                                                          channels=self.channels)
        if self.mapping.channels != self.channels:
            raise ConfigError(f"mapping has {self.mapping.channels} channels, system has "
                              f"{self.channels}")
        self.page_policy, self.refresh = page_policy, refresh
        self.channel_models = [DramChannelModel(timing, self.mapping, page_policy, refresh)
                               for _ in range(self.channels)]

    @property
    def peak_bandwidth_bytes_per_s(self) -> float:
        return self.channels * self.timing.peak_bandwidth_bytes_per_s

    @property
    def streaming_bandwidth_bytes_per_s(self) -> float:
        """The peak less refresh's share of busy time (tRFC of every tREFI, as `access`
        stalls a transaction): what a long stream sustains, row misses hidden by the banks."""
        t = self.timing
        refreshing = t.trfc / t.trefi if self.refresh else 0.0
        return self.peak_bandwidth_bytes_per_s * (1 - refreshing)

    def direction_switch_ps(self) -> float:
        """What a transaction that turns the data bus around costs beyond one that does not,
        on channels like these (`_direction_switch_ps`, measured once per configuration)."""
        return _direction_switch_ps(self.timing, self.channels, self.mapping.scheme,
                                    self.page_policy, self.refresh)

    def access(self, start_ps: int, address: int, nbytes: int, is_write: bool) -> DramAccess:
        if nbytes == 0:
            return DramAccess(start_ps, start_ps, 0, 0, is_write, 0, 0, 0, 0)
        ranges = self.mapping.channel_ranges(address, nbytes)
        if self.channels == 1:  # nothing to split
            (_, first, last), = ranges
            return self.channel_models[0]._access_range(start_ps, first, last, nbytes,
                                                        is_write)
        parts = [self.channel_models[c]._access_range(
                     start_ps, first, last, (last - first + 1) * self.timing.bytes_per_burst,
                     is_write)
                 for c, first, last in ranges]
        return DramAccess(
            start_ps=start_ps, end_ps=max(p.end_ps for p in parts),
            bursts=sum(p.bursts for p in parts), bytes=nbytes, is_write=is_write,
            row_hits=sum(p.row_hits for p in parts), row_misses=sum(p.row_misses for p in parts),
            activates=sum(p.activates for p in parts),
            precharges=sum(p.precharges for p in parts))


# ---------------------------------------------------------------------------------------------
# Energy
# ---------------------------------------------------------------------------------------------


@functools.cache
def _direction_switch_ps(timing: DramTiming, channels: int, scheme: str,
                         page_policy: PagePolicy, refresh: bool, transactions: int = 32
                         ) -> float:
    """What a transaction that turns the data bus around costs beyond one that does not,
    measured on fresh channels of this configuration: reads and writes alternated, each
    issued when the one before it ends (as the tile pipeline issues them), each direction in
    its own half of the address space (as `Dram.transfer` keeps them), against the same
    transactions all reads then all writes; per turn. It holds the bus turnaround (tWTR
    after a write) and the rows the other direction left open in the banks (write recovery,
    tRP, tRCD). Their sizes vary (1 to 97 bursts), so that the banks where each one starts
    vary as they do in a run: one size would find the same banks each time and, by the
    mapping's luck, no conflict or every one. A pure function of its arguments, so every
    hardware view of one DRAM configuration shares one measurement."""
    region = timing.channel_bytes * channels // 2
    sizes = [timing.bytes_per_burst * (1 + (37 * i) % 97) for i in range(transactions)]

    def run(order: list[tuple[bool, int]]) -> int:
        system = DramSystem(timing, channels, AddressMapping(timing, scheme, channels),
                            page_policy, refresh)
        now, next_address = 0, {False: 0, True: region}
        for is_write, nbytes in order:
            now = system.access(now, next_address[is_write], nbytes, is_write).end_ps
            next_address[is_write] += nbytes
        return now

    alternated = run([(is_write, n) for n in sizes for is_write in (False, True)])
    grouped = run([(False, n) for n in sizes] + [(True, n) for n in sizes])
    return (alternated - grouped) / (2 * transactions - 2)

@dataclass(frozen=True)
class DramEnergy:
    """Energy per DRAM action from IDD currents (Micron TN-40-07), per channel (all its chips).

    * activate + precharge pair: VDD * (IDD0*tRC - (IDD3N*tRAS + IDD2N*tRP))
    * read (write) burst:        VDD * (IDD4R (IDD4W) - IDD3N) * BL/2 tCK
    * refresh:                   VDD * (IDD5B - IDD3N) * tRFC, once every tREFI
    * background:                VDD * IDD3N (active standby, the default: open-page keeps rows
                                 open) or VDD * IDD2N (precharge standby); powered down,
                                 VDD * IDD3P (active) or VDD * IDD2P (precharge)
    each times the chips of a rank (bus width / chip width). I/O and termination energy are not
    included. With the presets (core energy only, background excluded):

    =========== ============== ============================= ===========================
    preset      pJ/bit read,   pJ/bit read, random (one ACT  background + refresh, mW
                streaming      per burst)
    =========== ============== ============================= ===========================
    DDR4-2400   5.8            12.3                          502
    LPDDR4-3200 5.3            9.4                           36
    HBM2        1.6            3.2                           82
    =========== ============== ============================= ===========================
    """

    pj_per_activate: float
    pj_per_read_burst: float
    pj_per_write_burst: float
    pj_per_refresh: float
    background_mw: float
    trefi_ps: int
    bits_per_burst: int
    bursts_per_row: int
    # background while powered down, rows open (IDD3P) or closed (IDD2P); None: no currents
    active_power_down_mw: float | None = None
    precharge_power_down_mw: float | None = None

    @classmethod
    def from_timing(cls, timing: DramTiming,
                    standby: Literal["active", "precharged"] = "active") -> DramEnergy:
        t = timing
        missing = [n for n in ("vdd", "idd0", "idd2n", "idd3n", "idd4r", "idd4w", "idd5ab")
                   if getattr(t, n) is None]
        if missing:
            raise ConfigError(f"DRAM {t.name!r}: no {', '.join(missing)} for the energy model")
        if standby not in ("active", "precharged"):
            raise ConfigError(f"standby must be 'active' or 'precharged', got {standby!r}")
        scale = t.vdd * t.chips_per_rank * t.tck_ps / PS_PER_NS  # mA * cycles -> pJ

        def mw(current_ma: float) -> float:  # a current drawn by every chip of the rank
            return t.vdd * t.chips_per_rank * current_ma
        act = t.idd0 * t.trc - (t.idd3n * t.tras + t.idd2n * t.trp)
        return cls(
            pj_per_activate=scale * act,
            pj_per_read_burst=scale * (t.idd4r - t.idd3n) * t.burst_cycles,
            pj_per_write_burst=scale * (t.idd4w - t.idd3n) * t.burst_cycles,
            pj_per_refresh=scale * (t.idd5ab - t.idd3n) * t.trfc,
            background_mw=mw(t.idd3n if standby == "active" else t.idd2n),
            trefi_ps=t.ps(t.trefi),
            bits_per_burst=8 * t.bytes_per_burst,
            bursts_per_row=t.bursts_per_row,
            active_power_down_mw=None if t.idd3p is None else mw(t.idd3p),
            precharge_power_down_mw=None if t.idd2p is None else mw(t.idd2p),
        )

    @property
    def refresh_mw(self) -> float:
        """Average refresh power: one refresh every tREFI (pJ/ns = mW)."""
        return self.pj_per_refresh * PS_PER_NS / self.trefi_ps

    @property
    def pj_per_bit_read(self) -> float:
        """Streaming read: burst energy plus one activation amortised over a whole row."""
        return (self.pj_per_read_burst + self.pj_per_activate / self.bursts_per_row) \
            / self.bits_per_burst

    @property
    def pj_per_bit_write(self) -> float:
        """Streaming write: burst energy plus one activation amortised over a whole row."""
        return (self.pj_per_write_burst + self.pj_per_activate / self.bursts_per_row) \
            / self.bits_per_burst

    @property
    def pj_per_bit_read_random(self) -> float:
        """Random read: one activation per burst."""
        return (self.pj_per_read_burst + self.pj_per_activate) / self.bits_per_burst

    def price(self, actions: Mapping[str, int], elapsed_ps: int) -> float:
        """Picojoules for the action counts (activates, precharges, read_bursts, write_bursts;
        precharges cost nothing apart: they are in the activate+precharge pair) plus background
        and refresh power over `elapsed_ps`."""
        unknown = set(actions) - {"activates", "precharges", "read_bursts", "write_bursts"}
        if unknown:
            raise KeyError(f"unknown DRAM actions: {sorted(unknown)}")
        return (actions.get("activates", 0) * self.pj_per_activate
                + actions.get("read_bursts", 0) * self.pj_per_read_burst
                + actions.get("write_bursts", 0) * self.pj_per_write_burst
                + (self.background_mw + self.refresh_mw) * elapsed_ps / PS_PER_NS)




class DramController(Module):
    """The DRAM as a simulation module: one SimPy event per transaction, timed by the model.

    Transactions are served one at a time, in arrival order (the controller's queue); each is
    timed in one call of `DramSystem.access` from the banks' open rows and the timing rules,
    from the DRAM clock's first edge at or after it arrives (its commands issue on that
    clock, edges every tCK from time 0; no synchronizer latency is added, an assumption).
    Tiles stream through two address regions, reads from the bottom half and writes from the
    top half, each advancing sequentially (operands are laid out in the order tiles use them).
    Actions: `read_bytes`, `write_bytes`, `activates`, `precharges`, `read_bursts`,
    `write_bursts`, `row_hits`, `row_misses`.
    """

    def __init__(self, name: str, parent: Module, cfg: DramConfig) -> None:
        super().__init__(name, parent)
        if cfg.preset not in PRESETS:
            raise ConfigError(f"unknown DRAM preset {cfg.preset!r}; expected one of "
                              f"{', '.join(PRESETS)}", key="dram.preset")
        self.timing = PRESETS[cfg.preset]
        self.system = DramSystem(self.timing, channels=cfg.channels)
        self.energy = DramEnergy.from_timing(self.timing)
        self.channels = cfg.channels or self.timing.channels
        self.queue = simpy.Resource(self.env, capacity=1)
        capacity = self.timing.channel_bytes * self.channels
        self._region = capacity // 2
        self._next = {False: 0, True: self._region}
        # Power-down: after `_pd_after_ps` without a transaction the channels power down; the
        # intervals spent so, [from, to), and when the last transaction ended.
        self.power_down = cfg.power_down
        self._pd_mw = {"off": self.energy.background_mw,
                       "active": self.energy.active_power_down_mw,
                       "precharge": self.energy.precharge_power_down_mw}[cfg.power_down]
        if self.power_down != "off" and (self.timing.txp is None or self._pd_mw is None):
            raise ConfigError(f"DRAM {cfg.preset!r} has no tXP or power-down current",
                              key="dram.power_down")
        self._pd_after_ps = self.timing.ps(cfg.power_down_idle_cycles)
        self._pd_from: list[int] = []
        self._pd_to: list[int] = []
        self._idle_since_ps = 0
        self._down_ready_ps = 0  # the earliest power-down entry after the last transaction

    def transfer(self, nbytes: int, is_write: bool) -> Generator:
        """Read or write `nbytes` as one transaction."""
        if nbytes <= 0:
            return
        with self.queue.request() as req:
            yield req
            base = 0 if not is_write else self._region
            address = self._next[is_write]
            if address + nbytes > base + self._region:
                address = base  # wrap around the region
            self._next[is_write] = address + nbytes
            now = int(self.env.now)
            edge = -(-now // self.timing.tck_ps) * self.timing.tck_ps  # the DRAM's clock
            start = edge + self._wake_up_ps(edge)
            access = self.system.access(start, address, nbytes, is_write)
            yield from self.busy_for(access.end_ps - now, "write" if is_write else "read",
                                     args={"bytes": nbytes})
            self._idle_since_ps = access.end_ps
            # power-down entry after the last data: a write's recovery first (tWRPDEN, WL +
            # BL/2 + tWR from its CAS), a read's tRDPDEN (RL + BL/2 + 1) a tCK (JESD79-4)
            t = self.timing
            self._down_ready_ps = access.end_ps + t.ps(t.twr if is_write else 1)
        self.count_all({"write_bytes" if is_write else "read_bytes": nbytes, **access.actions,
                        "row_hits": access.row_hits, "row_misses": access.row_misses})

    def _wake_up_ps(self, now: int) -> int:
        """What this transaction waits for the channels to leave power-down, 0 if they are
        up: they went down once the idle timer ran out and the last transaction allowed it
        (`_down_ready_ps`), stay down at least tCKE, and take tXP to exit. A power-down
        interval ends where the exit starts."""
        down_from = self._down_from_ps()
        if self.power_down == "off" or now <= down_from:
            return 0
        exit_at = max(now, down_from + self.timing.ps(self.timing.tcke))
        self._pd_from.append(down_from)
        self._pd_to.append(exit_at)
        self.count("power_down_exits")
        if self.power_down == "precharge":
            self.count("precharges", sum(ch.close_rows(down_from)
                                         for ch in self.system.channel_models))
        return exit_at - now + self.timing.ps(self.timing.txp)

    @property
    def idle_standby_mw(self) -> float:
        """A channel's background power while idle long enough to power down: IDD3P or
        IDD2P with power-down on, the active standby IDD3N with it off (refresh apart)."""
        return self._pd_mw

    def _down_from_ps(self) -> int:
        """When the channels power down if no transaction comes: the idle timer run out
        after the last one, and its own rule for entry (`_down_ready_ps`) met."""
        return max(self._idle_since_ps + self._pd_after_ps, self._down_ready_ps)

    def powered_down_ps(self, since_ps: int, end_ps: int) -> int:
        """How long the channels were powered down within [since_ps, end_ps); after the last
        transaction they stay down (the run's tail)."""
        if self.power_down == "off":
            return 0
        total = 0
        for i in range(bisect.bisect_right(self._pd_to, since_ps), len(self._pd_to)):
            if self._pd_from[i] >= end_ps:
                break
            total += min(self._pd_to[i], end_ps) - max(self._pd_from[i], since_ps)
        tail_from = max(self._down_from_ps(), since_ps)
        return total + max(0, end_ps - tail_from)

    def energy_pj(self, actions: Mapping[str, int], since_ps: int, end_ps: int
                  ) -> dict[str, float]:
        """Per action: activations and bursts from the IDD currents, and every channel's
        background and refresh power over [since_ps, end_ps) (`standby`: IDD3N awake, IDD3P
        or IDD2P powered down)."""
        e = self.energy
        down = self.powered_down_ps(since_ps, end_ps)
        standby = e.price({}, end_ps - since_ps)
        if down:
            standby -= (e.background_mw - self._pd_mw) * down / PS_PER_NS
        return {
            "activates": actions.get("activates", 0) * e.pj_per_activate,
            "read_bursts": actions.get("read_bursts", 0) * e.pj_per_read_burst,
            "write_bursts": actions.get("write_bursts", 0) * e.pj_per_write_burst,
            "standby": standby * self.channels,
        }
