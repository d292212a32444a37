"""desim's transaction-level DRAM model beside DRAMsim3's cycle-level controller.

arch/dram.py times a whole transaction (a tile's read or write-back, many bursts) in one
call, from the banks' state and the timing rules, with no command scheduler. This runs the
same transactions through DRAMsim3 (github.com/umd-memsys/DRAMsim3, built with its command
trace, `cmake .. -DCMD_TRACE=1 && make dramsim3main`) on a configuration written from
desim's own preset (same timings, organisation and address mapping, one rank), so that what
differs is the model, not the figures; and prints, per case, when the last data beat ends
in each (tCK) and their ratio. DRAMsim3's time is read from its command trace: the last
read or write command's cycle plus CL (CWL) and BL/2.

Two kinds of case:
- one transaction on an idle channel (reads and writes of 64 B to 1 MiB), and two queued
  one behind the other (a row conflict; a read then a write): what arch/dram.py's timing
  rules are for;
- runs of transactions as the tile pipeline asks for them: desim serves each from when the
  one before it ends (arch/dram.py, "What is not modelled"), where DRAMsim3 has them all
  queued at once and overlaps and reorders them; the "queued" column gives desim's model
  every arrival at cycle 0 too.

    python -m benchmarks.dramsim3_compare PATH/TO/dramsim3main [--json out.json]

Results and the build used: benchmarks/DRAMSIM3.md. tests/test_dram.py holds desim's side
of each case to the figures measured there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from arch.dram import DEFAULT_SCHEME, PRESETS, AddressMapping, DramChannelModel, DramTiming

KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Transfer:
    address: int
    nbytes: int
    is_write: bool


def cases(timing: DramTiming) -> dict[str, list[Transfer]]:
    """The access patterns compared, by name. Reads start at address 0 and writes in the
    top half of the channel, as `arch.dram.Dram.transfer` lays them out."""
    top = timing.channel_bytes // 2
    # an address in bank 0's next row: one row of every bank lies below it (DEFAULT_SCHEME
    # puts the row bits on top)
    next_row = timing.row_bytes * timing.banks
    out: dict[str, list[Transfer]] = {}
    for size in (64, 512, 4 * KIB, 64 * KIB, MIB):
        out[f"read {_size(size)}"] = [Transfer(0, size, False)]
    for size in (64, 4 * KIB, 64 * KIB, MIB):
        out[f"write {_size(size)}"] = [Transfer(top, size, True)]
    out["two reads, one bank's two rows"] = [Transfer(0, 512, False),
                                             Transfer(next_row, 512, False)]
    out["read then write, 4 KiB each"] = [Transfer(0, 4 * KIB, False),
                                          Transfer(top, 4 * KIB, True)]
    # row hits whose first burst is in the bank group written next to last: tWTR_L after
    # that group's write data binds, not tWTR_S after the write's last. Bytes the write
    # did not write: DRAMsim3 serves a read of written ones from its write queue.
    out["write 4 KiB, then read 512 B of its rows"] = [
        Transfer(top, 4 * KIB, True), Transfer(top + 4 * KIB + 128, 512, False)]
    for tile, result in ((4 * KIB, KIB), (16 * KIB, 4 * KIB), (64 * KIB, 16 * KIB)):
        stream, read_at, write_at = [], 0, top
        for _ in range(16):  # a tile's operands read, then its results written back
            stream += [Transfer(read_at, tile, False), Transfer(write_at, result, True)]
            read_at, write_at = read_at + tile, write_at + result
        out[f"16 tiles: read {_size(tile)}, write {_size(result)}"] = stream
    out["reads only, 64 x 4 KiB"] = [Transfer(i * 4 * KIB, 4 * KIB, False) for i in range(64)]
    return out


def _size(nbytes: int) -> str:
    return (f"{nbytes // MIB} MiB" if nbytes >= MIB else
            f"{nbytes // KIB} KiB" if nbytes >= KIB else f"{nbytes} B")


def desim_cycles(timing: DramTiming, transfers: list[Transfer], queued: bool = False,
                 refresh: bool = True) -> float:
    """When the last beat of `transfers` ends on a fresh channel (tCK). Each is asked for
    when the one before it ends, as the accelerator's DRAM queue hands them over; or, with
    `queued`, all at 0, so that the model may open a transfer's rows while the one before
    it still moves data (arch/dram.py: ACTs "as early as ... over the queue of earlier
    transactions"). `refresh`: as arch/dram.py charges it, an average stretch of busy time
    (DRAMsim3 refreshes every tREFI, so a case shorter than that sees none)."""
    channel = DramChannelModel(timing, AddressMapping(timing, DEFAULT_SCHEME, channels=1),
                               refresh=refresh)
    now = 0
    for t in transfers:
        now = channel.access(0 if queued else now, t.address, t.nbytes, t.is_write).end_ps
    return now / timing.tck_ps


def protocol(timing: DramTiming) -> str:
    """DRAMsim3's name for the standard of a desim preset (by the preset's name)."""
    for name in ("DDR4", "LPDDR4", "HBM2"):
        if timing.name.startswith(name):
            return name
    raise ValueError(f"no DRAMsim3 protocol for {timing.name!r}")


def dramsim3_ini(timing: DramTiming) -> str:
    """A DRAMsim3 configuration of one channel and one rank with `timing`'s figures and
    desim's address mapping; what DRAMsim3 asks for and desim has no figure for (tCKE,
    tXS, the preambles, ...) is DRAMsim3's own DDR4-2400 file's. One queue for reads and writes,
    served in the order they came: DRAMsim3's default, a read queue beside a write buffer
    drained only once it holds more than 8 writes with nothing else queued, posts writes
    and keeps up to 8 for good, where the tile pipeline writes each tile's results back
    when it asks.

    Where DRAMsim3 treats a standard apart, the file says what desim's preset means:
    HBM2's `columns` count two device widths each in DRAMsim3 (the 2n prefetch; it doubles
    them), so the file has half of desim's; and its ACT-to-CAS are tRCDRD and tRCDWR,
    both desim's tRCD. HBM2 keeps DRAMsim3's dual command bus (a row and a column command
    in one cycle, as JESD235's separate row and column buses allow): desim assumes the
    command bus never binds. LPDDR4's tPPD (a PRE to the next PRE) stays DRAMsim3's 0:
    desim has no such rule (benchmarks/DRAMSIM3.md)."""
    t = timing
    # DRAMsim3 spells desim's fields alike, with a rank's beside them (one rank: no bits)
    mapping = "".join(DEFAULT_SCHEME.split(":")).replace("ro", "rora", 1)
    chip_mbit = t.rows * t.columns * t.banks * t.device_width_bits // MIB
    channel_mb = chip_mbit * t.chips_per_rank // 8
    proto = protocol(t)
    columns = t.columns // 2 if proto == "HBM2" else t.columns
    rcd = f"tRCDRD = {t.trcd}\ntRCDWR = {t.trcd}" if proto == "HBM2" else f"tRCD = {t.trcd}"
    return f"""[dram_structure]
protocol = {proto}
bankgroups = {t.bank_groups}
banks_per_group = {t.banks_per_group}
rows = {t.rows}
columns = {columns}
device_width = {t.device_width_bits}
BL = {t.burst_length}

[timing]
tCK = {t.tck_ps / 1000}
AL = 0
CL = {t.cl}
CWL = {t.cwl}
{rcd}
tRP = {t.trp}
tRAS = {t.tras}
tRFC = {t.trfc}
tRFC2 = {t.trfc}
tRFC4 = {t.trfc}
tREFI = {t.trefi}
tRPRE = 1
tWPRE = 1
tRRD_S = {t.trrd_s}
tRRD_L = {t.trrd_l}
tWTR_S = {t.twtr_s}
tWTR_L = {t.twtr_l}
tFAW = {t.tfaw}
tWR = {t.twr}
tWR2 = {t.twr}
tRTP = {t.trtp}
tCCD_S = {t.tccd_s}
tCCD_L = {t.tccd_l}
tCKE = 6
tCKESR = 7
tXS = 432
tXP = {t.txp}
tRTRS = 1

[power]
VDD = {t.vdd}
IDD0 = {t.idd0}
IPP0 = 3.0
IDD2P = {t.idd2p}
IDD2N = {t.idd2n}
IDD3P = {t.idd3p}
IDD3N = {t.idd3n}
IDD4W = {t.idd4w}
IDD4R = {t.idd4r}
IDD5AB = {t.idd5ab}
IDD6x = 30

[system]
channel_size = {channel_mb}
channels = 1
bus_width = {t.bus_width_bits}
address_mapping = {mapping}
queue_structure = PER_BANK
refresh_policy = RANK_LEVEL_STAGGERED
row_buf_policy = OPEN_PAGE
cmd_queue_size = 8
trans_queue_size = 32
unified_queue = true

[other]
epoch_period = 100000000
output_level = 1
"""


def dramsim3_cycles(binary: Path, timing: DramTiming, transfers: list[Transfer]) -> float:
    """When the last beat of `transfers` ends in DRAMsim3 (tCK): every burst of every
    transfer in its trace at cycle 0, in order (its trace CPU hands them over one a cycle
    while the controller's queue has room)."""
    burst, t = timing.bytes_per_burst, timing
    lines = [f"{hex(x.address + i)} {'WRITE' if x.is_write else 'READ'} 0"
             for x in transfers for i in range(0, x.nbytes, burst)]
    # The trace CPU hands over its last line again at the end of the file: a last line
    # that is never due keeps it from doing so.
    lines.append(f"0x0 READ {1 << 60}")
    bursts = len(lines) - 1
    budget = 20 * bursts * t.burst_cycles + 20_000  # cycles: ample for every case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "ddr.ini").write_text(dramsim3_ini(t))
        (folder / "trace.txt").write_text("\n".join(lines) + "\n")
        subprocess.run([str(binary), str(folder / "ddr.ini"), "-c", str(budget), "-t",
                        str(folder / "trace.txt"), "-o", str(folder)], cwd=folder,
                       check=True, capture_output=True)
        commands = [line.split() for line in
                    next(folder.glob("*cmd.trace")).read_text().splitlines() if line.strip()]
    # each line: clk, command, channel, rank, bank group, bank, row, column
    ends = [int(c[0]) + (t.cl if c[1] == "read" else t.cwl) + t.burst_cycles
            for c in commands if c[1] in ("read", "write")]
    if len(ends) != bursts:
        raise RuntimeError(f"DRAMsim3 issued {len(ends)} of {bursts} bursts in {budget} "
                           "cycles")
    return float(max(ends))


def compare(binary: Path, preset: str) -> list[dict]:
    timing = PRESETS[preset]
    rows = []
    for name, transfers in cases(timing).items():
        ours, theirs = desim_cycles(timing, transfers), dramsim3_cycles(binary, timing,
                                                                       transfers)
        queued = desim_cycles(timing, transfers, queued=True)
        nbytes = sum(t.nbytes for t in transfers)
        rows.append({"case": name, "bytes": nbytes, "desim": ours, "desim_queued": queued,
                     "dramsim3": theirs, "ratio": ours / theirs,
                     "queued_ratio": queued / theirs,
                     "desim_gbps": nbytes / (ours * timing.tck_ps * 1e-3),
                     "dramsim3_gbps": nbytes / (theirs * timing.tck_ps * 1e-3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dramsim3main", type=Path)
    parser.add_argument("--preset", choices=list(PRESETS), action="append",
                        help="a preset to compare (again for more); all of them by default")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    for preset in args.preset or list(PRESETS):
        rows = results[preset] = compare(args.dramsim3main, preset)
        tck_ns = PRESETS[preset].tck_ps / 1000
        print(f"{preset}, one channel, one rank, open page; the last data beat, tCK "
              f"({tck_ns:g} ns)")
        print(f"{'case':38} {'desim':>8} {'queued':>8} {'DRAMsim3':>8} {'ratio':>6} "
              f"{'queued':>6} {'GB/s':>13}")
        for r in rows:
            print(f"{r['case']:38} {r['desim']:8,.0f} {r['desim_queued']:8,.0f} "
                  f"{r['dramsim3']:8,.0f} {r['ratio']:6.3f} {r['queued_ratio']:6.3f} "
                  f"{r['desim_gbps']:6.2f} {r['dramsim3_gbps']:6.2f}")
        print()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
