"""DRAM timing and energy: closed-form checks against the rules in arch/dram.py."""

import dataclasses
import itertools
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arch.dram import (
    DEFAULT_SCHEME,
    PRESETS,
    AddressMapping,
    DramChannelModel,
    DramCoord,
    DramEnergy,
    DramSystem,
    DramTiming,
)
from desim.errors import ConfigError

DDR4 = PRESETS["DDR4-2400"]
HBM2 = PRESETS["HBM2"]
LPDDR4 = PRESETS["LPDDR4-3200"]
MiB = 1 << 20


def coord_address(timing, bankgroup, bank, row, column=0):
    """Byte address of a burst in a single-channel default mapping."""
    return AddressMapping(timing, channels=1).encode(DramCoord(0, bankgroup, bank, row, column))


# --- presets and peak bandwidth ------------------------------------------------------------------

def test_peak_bandwidth_ddr4_2400_is_19_2_gb_s_within_tck_rounding():
    # tCK is 833 ps instead of 833.33 ps: 64 B every 4 tCK = 3,332 ps is 0.04 % above 19.2 GB/s.
    assert DDR4.tck_ps == 833 and DDR4.bytes_per_burst == 64 and DDR4.burst_ps == 3332
    assert DDR4.peak_bandwidth_bytes_per_s == 64e12 / 3332
    assert DDR4.peak_bandwidth_bytes_per_s == pytest.approx(19.2e9, rel=5e-4)
    assert DDR4.row_bytes == 8192 and DDR4.chips_per_rank == 8


def test_peak_bandwidth_other_presets():
    assert LPDDR4.peak_bandwidth_bytes_per_s == 6.4e9  # 32 B every 8 x 625 ps
    assert HBM2.peak_bandwidth_bytes_per_s == 32e9  # 64 B every 2 x 1,000 ps
    assert DramSystem(HBM2).peak_bandwidth_bytes_per_s == 256e9
    # LPDDR4 ns figures converted with ceil at 0.625 ns: 18 ns -> 29, 42 ns -> 68
    assert (LPDDR4.trcd, LPDDR4.trp, LPDDR4.tras) == (29, 29, 68)
    assert all(t.source for t in PRESETS.values())


# --- bandwidth of sequential streams -------------------------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_one_4mib_read_reaches_90_percent_of_peak(name):
    t = PRESETS[name]
    a = DramChannelModel(t).access(0, 0, 4 * MiB, is_write=False)
    assert a.bursts == 4 * MiB // t.bytes_per_burst
    assert a.row_misses == a.activates == 4 * MiB // t.row_bytes  # every row opened once
    assert a.row_hits == a.bursts - a.row_misses
    # ceiling: refresh takes tRFC of every tREFI of busy time
    ceiling = 1 - t.trfc / t.trefi
    assert 0.9 * t.peak_bandwidth_bytes_per_s <= a.bandwidth_bytes_per_s
    assert a.bandwidth_bytes_per_s <= ceiling * t.peak_bandwidth_bytes_per_s


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_long_read_runs_at_the_streaming_rate_the_mapper_estimates_with(name):
    """The mapper's DRAM rate (`streaming_bandwidth_bytes_per_s`: the peak less refresh's
    tRFC of every tREFI) is what a 4 MiB read sustains, within 1% (its fixed latency and
    the rows it opens)."""
    t = PRESETS[name]
    system = DramSystem(t)
    assert system.streaming_bandwidth_bytes_per_s == (
        system.peak_bandwidth_bytes_per_s * (1 - t.trfc / t.trefi))
    a = system.access(0, 0, 4 * MiB, is_write=False)
    assert a.bandwidth_bytes_per_s == pytest.approx(system.streaming_bandwidth_bytes_per_s,
                                                    rel=0.01)
    assert DramSystem(t, refresh=False).streaming_bandwidth_bytes_per_s == (
        system.peak_bandwidth_bytes_per_s)


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_bus_turn_costs_a_row_conflict_and_the_turnaround(name):
    """Alternating reads and writes (each in its own half of the address space) costs, per
    turn, no less than a precharge (the other direction left another row open) and no more
    than write recovery, a precharge, an activate, the write-to-read turnaround and a CAS
    latency together. DDR4-2400: 29.7 ns (tRP + tRCD is 26.7 ns)."""
    t = PRESETS[name]
    turn = DramSystem(t).direction_switch_ps()
    assert t.trp * t.tck_ps <= turn <= (t.twr + t.trp + t.trcd + t.twtr_l + t.cl) * t.tck_ps
    if name == "DDR4-2400":
        assert turn == pytest.approx(29_652, abs=1)


@pytest.mark.parametrize("name", list(PRESETS))
def test_4kib_reads_issued_at_line_rate_reach_90_percent_of_peak(name):
    t = PRESETS[name]
    model = DramChannelModel(t)
    step_ps = 4096 * 10**12 // int(t.peak_bandwidth_bytes_per_s)  # arrivals at peak rate
    ends = [model.access(k * step_ps, k * 4096, 4096, is_write=False).end_ps
            for k in range(1024)]
    assert ends == sorted(ends)
    assert 4 * MiB * 1e12 / ends[-1] >= 0.9 * t.peak_bandwidth_bytes_per_s


@pytest.mark.parametrize("name", list(PRESETS))
def test_sequential_write_reaches_90_percent_of_peak(name):
    t = PRESETS[name]
    a = DramChannelModel(t).access(0, 0, 4 * MiB, is_write=True)
    assert a.bandwidth_bytes_per_s >= 0.9 * t.peak_bandwidth_bytes_per_s


@pytest.mark.parametrize("name", ["HBM2", "LPDDR4-3200"])
def test_system_spreads_a_stream_over_all_channels(name):
    t = PRESETS[name]
    system = DramSystem(t)
    a = system.access(0, 0, 4 * MiB, is_write=False)
    assert a.bursts == 4 * MiB // t.bytes_per_burst and a.bytes == 4 * MiB
    assert a.bandwidth_bytes_per_s >= 0.9 * t.channels * t.peak_bandwidth_bytes_per_s


def test_system_one_burst_per_channel_ends_after_trcd_cl_burst():
    system = DramSystem(HBM2, refresh=False)
    a = system.access(0, 0, 8 * 64, is_write=False)
    assert (a.bursts, a.activates, a.row_hits) == (8, 8, 0)
    assert a.end_ps == (14 + 14 + 2) * 1000  # every channel in parallel: tRCD + CL + BL/2


def test_hbm2_rows_are_2_kb_as_in_jesd235s_legacy_channels():
    """A 128-bit HBM2 channel's page is 2 KB (JESD235 legacy mode; gem5's HBM_1000_4H_1x128).
    DRAMsim3's HBM2_8Gb_x128.ini says 64 columns, which DRAMsim3 doubles for HBM (a column
    of two device widths); the preset once took them as 64 of 128 bits, rows of 1 KiB. So
    8 KiB on one channel, 2 KiB to each bank group, opens one row in each: 4 ACTs, not 8."""
    assert (HBM2.row_bytes, HBM2.bursts_per_row, HBM2.channel_bytes) == (2048, 32, 1 << 30)
    a = DramChannelModel(HBM2, refresh=False).access(0, 0, 8 * 1024, is_write=False)
    assert (a.activates, a.row_hits) == (4, 124)


# --- closed forms: row misses, tFAW, turnarounds, refresh ----------------------------------------

def row_miss_stream(t, n, is_write):
    """n one-burst accesses to bank 0, each a different row, all queued at time 0."""
    model = DramChannelModel(t, refresh=False)
    return [model.access(0, coord_address(t, 0, 0, row), t.bytes_per_burst, is_write)
            for row in range(n)]


def test_row_miss_stream_ddr4_exact_ps():
    # ACT_k = k * (tRAS + tRP) = 55k tCK; CAS_k = ACT_k + tRCD; end = CAS_k + CL + BL/2.
    reads = row_miss_stream(DDR4, 10, is_write=False)
    assert [a.end_ps for a in reads] == [(55 * k + 16 + 16 + 4) * 833 for k in range(10)]
    assert reads[-1].end_ps == 442_323
    # Writes: PRE waits for write recovery, CAS + CWL + BL/2 + tWR = 16 + 16 + 4 + 19 = 55 tCK
    # after ACT (> tRAS 39), so ACT_k = 71k tCK; end = CAS + CWL + BL/2.
    writes = row_miss_stream(DDR4, 10, is_write=True)
    assert [a.end_ps for a in writes] == [(71 * k + 16 + 16 + 4) * 833 for k in range(10)]
    assert writes[-1].end_ps == 562_275
    assert [(a.row_misses, a.activates, a.precharges, a.row_hits) for a in reads[:2]] == [
        (1, 1, 0, 0), (1, 1, 1, 0)]


def test_row_conflict_inside_one_transaction_exact_ps():
    # "ba:bg:ro:co:ch": consecutive rows of one bank are contiguous, so 16 KiB = row 0 then row 1
    # of bank 0, 128 bursts each, tCCD_L (6 tCK) apart within the bank group.
    model = DramChannelModel(DDR4, AddressMapping(DDR4, "ba:bg:ro:co:ch", channels=1),
                             refresh=False)
    a = model.access(0, 0, 2 * 8192, is_write=False)
    assert (a.bursts, a.row_misses, a.precharges, a.row_hits) == (256, 2, 1, 254)
    last_cas_row0 = 16 + 127 * 6  # ACT 0, CAS from tRCD
    act_row1 = max(39, last_cas_row0 + 9) + 16  # PRE: tRAS, and tRTP after the last read; + tRP
    last_cas = act_row1 + 16 + 127 * 6
    assert a.end_ps == (last_cas + 16 + 4) * 833 == 1601 * 833


@pytest.mark.parametrize("name", list(PRESETS))
def test_row_miss_stream_is_n_trc(name):
    t = PRESETS[name]
    ends = [a.end_ps for a in row_miss_stream(t, 8, is_write=False)]
    first = t.ps(t.trcd + t.cl + t.burst_cycles)
    assert ends == [first + k * t.ps(t.tras + t.trp) for k in range(8)]


@pytest.mark.parametrize("name, with_faw, without_faw", [
    # DDR4: ACTs at 0, 4, 8, 12 tCK (tRRD_S); the 5th waits for tFAW 26 instead of 16; its CAS
    # is tRCD later and the data ends CL + BL/2 after that.
    ("DDR4-2400", (26 + 16 + 16 + 4) * 833, (16 + 16 + 16 + 4) * 833),
    # HBM2: ACTs 4 tCK apart, tFAW 30: 5th ACT at 30 instead of 16; + tRCD 14 + CL 14 + 2.
    ("HBM2", (30 + 14 + 14 + 2) * 1000, (16 + 14 + 14 + 2) * 1000),
])
def test_tfaw_limits_five_activations(name, with_faw, without_faw):
    def fifth_end(t):
        model = DramChannelModel(t, refresh=False)
        banks = [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)]  # (bank group, bank): tRRD_S apart
        accesses = [model.access(0, coord_address(t, bg, ba, 0), t.bytes_per_burst, False)
                    for bg, ba in banks]
        assert sum(a.activates for a in accesses) == 5
        return accesses[-1].end_ps

    t = PRESETS[name]
    assert fifth_end(t) == with_faw
    assert fifth_end(dataclasses.replace(t, tfaw=0)) == without_faw


def test_trrd_l_within_a_bank_group():
    model = DramChannelModel(DDR4, refresh=False)
    model.access(0, coord_address(DDR4, 0, 0, 0), 64, False)  # ACT 0, CAS 16
    a = model.access(0, coord_address(DDR4, 0, 1, 0), 64, False)  # same group: ACT at tRRD_L 6
    assert a.end_ps == (6 + 16 + 16 + 4) * 833


def test_read_write_turnarounds_exact():
    model = DramChannelModel(DDR4, refresh=False)
    rd = model.access(0, 0, 64, is_write=False)  # ACT 0, CAS 16, data ends 36 tCK
    assert rd.end_ps == 36 * 833
    # write data starts 2 tCK after the read data: CAS = 36 + 2 - CWL 16 = 22; ends + 16 + 4
    wr = model.access(0, 0, 64, is_write=True)
    assert (wr.end_ps, wr.row_hits) == (42 * 833, 1)
    # read after write, same bank group: CAS = write data end 42 + tWTR_L 9; ends + 16 + 4
    rd2 = model.access(0, 0, 64, is_write=False)
    assert rd2.end_ps == 71 * 833


def test_lpddr4_turnarounds_follow_jesd209_4():
    """LPDDR4-3200, one 32 B burst each (tCK 625 ps; RL 28, WL 14, tWR 29: JESD209-4, as
    DRAMSys's memspec). The read: ACT 0, CAS at tRCD 29, data ends 29 + RL 28 + BL/2 8 = 65.
    The write to that row: JESD209-4's READ to WRITE, RL 28 + RU(tDQSCKmax 3.5 ns / tCK) 6
    + BL/2 8 - WL 14 + tWPRE 2 + RD(tRPST) 0 = 30 after the read CAS: 59; its data tDQSS 1
    after WL, 74 to 82. A read after it: WRITE to READ, WL 14 + 1 + BL/2 8 + tWTR 16 = 39
    after the write CAS: 98, ends 134. A read of another row of the bank after the write:
    WRITE to PRECHARGE, WL 14 + BL/2 8 + tWR 29 + 1 = 52 after the write CAS: 111, ACT at
    + tRP 29 = 140, CAS + tRCD 29 = 169, ends 205."""
    assert (LPDDR4.cl, LPDDR4.cwl, LPDDR4.twr) == (28, 14, 29)
    assert (LPDDR4.read_to_write, LPDDR4.tdqss) == (8, 1)
    model = DramChannelModel(LPDDR4, refresh=False)
    assert model.access(0, 0, 32, is_write=False).end_ps == 65 * 625
    wr = model.access(0, 0, 32, is_write=True)
    assert (wr.end_ps, wr.row_hits) == (82 * 625, 1)
    assert model.access(0, 0, 32, is_write=False).end_ps == 134 * 625
    model = DramChannelModel(LPDDR4, refresh=False)
    model.access(0, 0, 32, is_write=False)
    model.access(0, 0, 32, is_write=True)
    other_row = model.access(0, coord_address(LPDDR4, 0, 0, 1), 32, is_write=False)
    assert (other_row.end_ps, other_row.precharges) == (205 * 625, 1)


def test_refresh_stretches_busy_time_by_trfc_over_trefi_minus_trfc():
    raw = DramChannelModel(DDR4, refresh=False).access(0, 0, 4096, False).end_ps
    with_refresh = DramChannelModel(DDR4).access(0, 0, 4096, False).end_ps
    assert with_refresh == raw + raw * 420 // (9364 - 420)
    # idle time before a transaction is not stretched
    model = DramChannelModel(DDR4)
    model.access(0, 0, 4096, False)
    late = model.access(10**9, 4 * 8192, 4096, False)  # bank 1 of each group: empty banks
    assert late.end_ps - late.start_ps == with_refresh
    assert with_refresh == 251_169


def test_write_to_read_in_another_bank_group_waits_twtr_s():
    # write: ACT 0, CAS at tRCD 16, data ends 16 + CWL 16 + BL/2 4 = 36 tCK. The read in
    # bank group 1: ACT at tRRD_S 4, ready at 20, but its CAS waits for the write data's
    # end + tWTR_S 3 = 39 (tWTR_L 9 is for the same group); ends 39 + CL 16 + 4 = 59 tCK.
    model = DramChannelModel(DDR4, refresh=False)
    assert model.access(0, coord_address(DDR4, 0, 0, 0), 64, is_write=True).end_ps == 36 * 833
    rd = model.access(0, coord_address(DDR4, 1, 0, 0), 64, is_write=False)
    assert (rd.end_ps, rd.activates) == (59 * 833, 1)


def test_a_read_waits_twtr_l_after_the_write_data_of_its_own_bank_group():
    """A 128 B write over bank groups 0 and 1: ACTs at 0 and tRRD_S 4, CASes at tRCD 16 and
    20, data ending 16 + CWL 16 + BL/2 4 = 36 (group 0) and 40 (group 1). A read of the row
    open in group 0: tWTR_S 3 after the write's last data (43) is not enough, its own group's
    write data ended at 36 and tWTR_L 9 holds: CAS at 45, ends 45 + CL 16 + 4 = 65 tCK (63
    had the read waited on the last burst's group alone; DRAMsim3's write_to_read_l)."""
    model = DramChannelModel(DDR4, refresh=False)
    assert model.access(0, 0, 128, is_write=True).end_ps == 40 * 833
    rd = model.access(0, 0, 64, is_write=False)
    assert (rd.end_ps, rd.row_hits) == (65 * 833, 1)
    # in group 2, which the write did not use: tWTR_S after the data, ACT at tRRD_S after
    # group 1's (8), CAS at max(8 + 16, 40 + 3) = 43, ends 63
    model = DramChannelModel(DDR4, refresh=False)
    model.access(0, 0, 128, is_write=True)
    assert model.access(0, coord_address(DDR4, 2, 0, 0), 64, False).end_ps == 63 * 833


def test_back_to_back_reads_are_tccd_l_apart_in_one_bank_group_tccd_s_in_two():
    # read 1: ACT 0, CAS 16. Another burst of the same row (bank group 0, column 8): a row
    # hit, CAS at 16 + tCCD_L 6 = 22, ends 22 + CL 16 + BL/2 4 = 42 tCK. In bank group 1
    # instead: ACT at tRRD_S 4, CAS at max(4 + tRCD 16, 16 + tCCD_S 4) = 20, ends 40 tCK.
    for column, bankgroup, end in ((8, 0, 42), (0, 1, 40)):
        model = DramChannelModel(DDR4, refresh=False)
        model.access(0, 0, 64, is_write=False)
        second = model.access(0, coord_address(DDR4, bankgroup, 0, 0, column), 64, False)
        assert second.end_ps == end * 833, bankgroup


def test_a_row_conflict_inside_a_transaction_waits_tras_after_the_act():
    # "ch:co:ba:bg:ro": the row is the lowest field, so bursts 0 and 1 are rows 0 and 1 of
    # bank 0. ACT 0 at 0, CAS 16; the PRE waits for tRAS 39 (the read CAS at 16 is earlier),
    # ACT 1 at 39 + tRP 16 = 55, CAS 55 + tRCD 16 = 71, ends 71 + CL 16 + BL/2 4 = 91 tCK.
    mapping = AddressMapping(DDR4, "ch:co:ba:bg:ro", channels=1)
    assert [mapping.decode(64 * i).row for i in range(2)] == [0, 1]
    a = DramChannelModel(DDR4, mapping, refresh=False).access(0, 0, 128, is_write=False)
    assert (a.bursts, a.row_misses, a.precharges, a.row_hits) == (2, 2, 1, 0)
    assert a.end_ps == 91 * 833


def test_tfaw_is_a_rolling_window_of_every_four_activations():
    """Nine one-burst reads to nine banks, bank groups alternating (tRRD_S 4 apart), all at
    0: ACTs at 0, 4, 8, 12; then each ACT waits for tFAW 26 after the one four before it:
    26, 30, 34, 38, and the ninth 26 + 26 = 52 (not 42). Each CAS is tRCD 16 after its ACT
    (the bus allows every 4 tCK), data ends CL 16 + BL/2 4 later."""
    model = DramChannelModel(DDR4, refresh=False)
    banks = [(bg, ba) for ba in range(3) for bg in range(4)][:9]
    ends = [model.access(0, coord_address(DDR4, bg, ba, 0), 64, False).end_ps
            for bg, ba in banks]
    acts = [0, 4, 8, 12, 26, 30, 34, 38, 52]
    assert ends == [(act + 16 + 16 + 4) * 833 for act in acts]


def test_hbm2_writes_pay_cwl_and_write_recovery_not_cl():
    """HBM2: CWL 4, CL 14. One write burst: ACT 0, CAS at tRCD 14, ends 14 + CWL 4 + BL/2 2
    = 20 tCK. Writes to another row of the bank: the PRE waits for CAS + CWL + BL/2 + tWR
    = 14 + 4 + 2 + 16 = 36 tCK after the ACT (> tRAS 34), so ACT_k = k (36 + tRP 14)."""
    one = DramChannelModel(HBM2, refresh=False).access(0, 0, 64, is_write=True)
    assert one.end_ps == 20 * 1000
    ends = [a.end_ps for a in row_miss_stream(HBM2, 4, is_write=True)]
    assert ends == [(50 * k + 14 + 4 + 2) * 1000 for k in range(4)]


def test_a_system_ends_when_its_slowest_channel_ends():
    """HBM2, 9 bursts: one each on channels 1-7 (tRCD 14 + CL 14 + BL/2 2 = 30 tCK), two on
    channel 0 (burst 8 in bank group 1: ACT at tRRD_S 4, CAS at 4 + 14 = 18, ends 18 + 14 +
    2 = 34 tCK): the transaction ends at 34 tCK, not 30."""
    a = DramSystem(HBM2, refresh=False).access(0, 0, 9 * 64, is_write=False)
    assert (a.bursts, a.activates, a.bytes) == (9, 9, 9 * 64)
    assert a.end_ps == 34 * 1000


# --- row hits and page policy --------------------------------------------------------------------

def test_row_hits_of_a_repeated_access():
    model = DramChannelModel(DDR4, refresh=False)
    first = model.access(0, 0, 4096, False)  # 64 bursts over the 4 bank groups' bank 0
    assert (first.bursts, first.row_misses, first.row_hits, first.precharges) == (64, 4, 60, 0)
    second = model.access(10**6, 0, 4096, False)
    assert (second.row_misses, second.row_hits, second.activates) == (0, 64, 0)
    assert second.elapsed_ps == (63 * 4 + 16 + 4) * 833  # no tRCD: CAS on arrival, CL once
    assert first.elapsed_ps == (16 + 63 * 4 + 16 + 4) * 833
    # a different row of the same banks: four conflicts
    third = model.access(2 * 10**6, 1 << 20, 4096, False)
    assert (third.row_misses, third.precharges, third.row_hits) == (4, 4, 60)


def test_closed_page_precharges_every_opened_bank():
    model = DramChannelModel(DDR4, page_policy="closed", refresh=False)
    for _ in range(2):
        a = model.access(0, 0, 4096, False)
        assert (a.row_misses, a.row_hits, a.activates, a.precharges) == (4, 60, 4, 4)
    with pytest.raises(ConfigError):
        DramChannelModel(DDR4, page_policy="lazy")


def test_closed_page_reopens_a_bank_trp_after_its_precharge():
    # closed page: read 1 opens bank 0 (ACT 0, CAS 16) and precharges it at tRAS 39, so the
    # bank may activate again at 39 + tRP 16 = 55; read 2 of the same row: ACT 55, CAS 71,
    # ends 71 + CL 16 + BL/2 4 = 91 tCK (a row miss again, not a hit).
    model = DramChannelModel(DDR4, page_policy="closed", refresh=False)
    assert model.access(0, 0, 64, False).end_ps == 36 * 833
    second = model.access(0, 0, 64, False)
    assert (second.activates, second.precharges, second.row_hits) == (1, 1, 0)
    assert second.end_ps == 91 * 833


def test_closing_the_rows_waits_tras_then_trp_before_the_next_act():
    # read: ACT 0, CAS 16 (bank 0 may precharge from tRAS 39). Closed at 100 tCK: the next
    # ACT at 100 + tRP 16 = 116, CAS 132, ends 132 + CL 16 + BL/2 4 = 152 tCK. Closed at 0:
    # the PRE waits for tRAS, ACT at 39 + 16 = 55, CAS 71, ends 91 tCK.
    for close_at, end in ((100, 152), (0, 91)):
        model = DramChannelModel(DDR4, refresh=False)
        model.access(0, 0, 64, False)
        assert model.close_rows(close_at * 833) == 1
        again = model.access(close_at * 833, 0, 64, False)
        assert (again.activates, again.precharges, again.end_ps) == (1, 0, end * 833)


def test_default_mapping_alternates_bank_groups_then_columns():
    m = AddressMapping(DDR4)
    assert DEFAULT_SCHEME == "ro:ba:co:bg:ch"
    assert [m.decode(64 * i).bankgroup for i in range(5)] == [0, 1, 2, 3, 0]
    assert m.decode(64 * 4).column == 8  # next burst of bank group 0
    assert m.decode(4 * 8192) == DramCoord(0, 0, 1, 0, 0)  # after a row of each group: next bank
    assert m.capacity_bytes == 8 << 30  # 8 chips x 8 Gb
    h = AddressMapping(HBM2)
    assert [h.decode(64 * i).channel for i in range(9)] == [0, 1, 2, 3, 4, 5, 6, 7, 0]


# --- address mapping round trips -----------------------------------------------------------------

SCHEMES = [DEFAULT_SCHEME, "ro:ba:bg:co:ch", "ch:ro:co:ba:bg", "co:ro:ch:bg:ba"]


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(list(PRESETS)), scheme=st.sampled_from(SCHEMES),
       data=st.data())
def test_mapping_round_trips(name, scheme, data):
    t = PRESETS[name]
    m = AddressMapping(t, scheme)
    address = data.draw(st.integers(0, m.capacity_bytes - 1))
    coord = m.decode(address)
    assert m.encode(coord) == address - address % t.bytes_per_burst
    drawn = DramCoord(
        channel=data.draw(st.integers(0, t.channels - 1)),
        bankgroup=data.draw(st.integers(0, t.bank_groups - 1)),
        bank=data.draw(st.integers(0, t.banks_per_group - 1)),
        row=data.draw(st.integers(0, t.rows - 1)),
        column=t.burst_length * data.draw(st.integers(0, t.bursts_per_row - 1)))
    assert m.decode(m.encode(drawn)) == drawn


def test_mapping_rejects_bad_input():
    with pytest.raises(ConfigError):
        AddressMapping(DDR4, "ro:ba:co:bg")
    with pytest.raises(ConfigError):
        AddressMapping(DDR4, "ro:ba:co:bg:ch:ra")
    m = AddressMapping(DDR4)
    with pytest.raises(ValueError):
        m.decode(m.capacity_bytes)
    with pytest.raises(ValueError):
        m.encode(DramCoord(0, 4, 0, 0, 0))
    with pytest.raises(ValueError):  # a channel model cannot take a multi-channel transaction
        DramChannelModel(HBM2, AddressMapping(HBM2)).access(0, 0, 128, False)


# --- energy --------------------------------------------------------------------------------------

def test_energy_of_a_read_is_priced_from_idd_closed_forms():
    e = DramEnergy.from_timing(DDR4)
    tck_ns, chips = 0.833, 8
    read_burst = 1.2 * (135 - 43) * 4 * tck_ns * chips  # VDD (IDD4R - IDD3N) BL/2 tCK
    activate = 1.2 * (48 * 55 - (43 * 39 + 34 * 16)) * tck_ns * chips  # TN-40-07
    assert e.pj_per_read_burst == pytest.approx(read_burst, rel=1e-12)
    assert e.pj_per_activate == pytest.approx(activate, rel=1e-12)
    assert e.pj_per_write_burst == pytest.approx(1.2 * (123 - 43) * 4 * tck_ns * chips)

    nbytes = 1000
    a = DramChannelModel(DDR4).access(0, 0, nbytes, is_write=False)
    assert a.actions == {"activates": 4, "precharges": 0,
                         "read_bursts": math.ceil(nbytes / 64), "write_bursts": 0}
    assert e.price(a.actions, 0) == pytest.approx(16 * read_burst + 4 * activate, rel=1e-12)


def test_energy_background_and_refresh_over_time():
    e = DramEnergy.from_timing(DDR4)
    background_mw = 1.2 * 43 * 8
    refresh_mw = 1.2 * (250 - 43) * 8 * 420 / 9364  # (IDD5 - IDD3N) for tRFC every tREFI
    assert e.background_mw == pytest.approx(background_mw)
    assert e.refresh_mw == pytest.approx(refresh_mw, rel=1e-12)
    assert e.price({}, 1_000_000) == pytest.approx((background_mw + refresh_mw) * 1000)
    idle = DramEnergy.from_timing(DDR4, standby="precharged")
    assert idle.background_mw == pytest.approx(1.2 * 34 * 8)
    # powered down: IDD3P with rows open (active standby), IDD2P with all banks closed
    assert e.active_power_down_mw == pytest.approx(1.2 * 37 * 8)
    assert e.precharge_power_down_mw == pytest.approx(1.2 * 25 * 8)
    with pytest.raises(KeyError):
        e.price({"reads": 1}, 0)
    with pytest.raises(ConfigError):
        DramEnergy.from_timing(dataclasses.replace(DDR4, idd5ab=None))


def test_write_bursts_are_priced_at_idd4w():
    e = DramEnergy.from_timing(DDR4)
    write_burst = 1.2 * (123 - 43) * 4 * 0.833 * 8  # VDD (IDD4W - IDD3N) BL/2 tCK, 8 chips
    read_burst = 1.2 * (135 - 43) * 4 * 0.833 * 8
    assert e.price({"write_bursts": 3, "read_bursts": 2}, 0) == pytest.approx(
        3 * write_burst + 2 * read_burst, rel=1e-12)


def test_standby_energy_is_every_channels():
    """HBM2, 8 channels of one 128-bit chip each: background VDD IDD3N = 1.2 x 55 = 66 mW
    and refresh 1.2 x (250 - 55) x 260 / 3900 = 15.6 mW a channel; over 1 us the 8 channels
    draw 8 x 81.6 mW x 1,000 ns = 652,800 pJ."""
    from arch.config import DramConfig
    from arch.dram import DramController
    from desim.module import Simulator

    dram = DramController("dram", Simulator(), DramConfig(preset="HBM2"))
    assert dram.channels == 8
    assert dram.energy_pj({}, 0, 1_000_000)["standby"] == pytest.approx(652_800, rel=1e-12)


def test_energy_per_bit_is_in_the_expected_ranges():
    ddr4, hbm2, lp4 = (DramEnergy.from_timing(t) for t in (DDR4, HBM2, LPDDR4))
    assert 10 <= ddr4.pj_per_bit_read_random <= 25  # one ACT per 64 B burst
    assert 2 <= ddr4.pj_per_bit_read <= 8  # streaming: one ACT per 8 KiB row
    assert ddr4.pj_per_bit_read_random == pytest.approx(12.29, abs=0.01)
    assert ddr4.pj_per_bit_read == pytest.approx(5.80, abs=0.01)
    assert hbm2.pj_per_bit_read == pytest.approx(1.62, abs=0.01)
    assert hbm2.pj_per_bit_read < lp4.pj_per_bit_read < ddr4.pj_per_bit_read
    assert hbm2.pj_per_bit_read_random < lp4.pj_per_bit_read_random \
        < ddr4.pj_per_bit_read_random


def test_a_streamed_write_differs_from_a_read_by_its_burst_current_alone():
    """Both amortise one activation over a row; a write burst draws IDD4W where a read
    draws IDD4R, for the burst's cycles: DDR4-2400 (123 against 135 mA) writes for 0.750
    pJ/bit less, HBM2 (500 against 390 mA) for 0.516 more."""
    for timing in (DDR4, HBM2, LPDDR4):
        e = DramEnergy.from_timing(timing)
        burst = (timing.vdd * timing.chips_per_rank * timing.tck_ps / 1000
                 * (timing.idd4w - timing.idd4r) * timing.burst_cycles)
        assert e.pj_per_bit_write - e.pj_per_bit_read == pytest.approx(
            burst / (8 * timing.bytes_per_burst), rel=1e-12)
    ddr4, hbm2 = DramEnergy.from_timing(DDR4), DramEnergy.from_timing(HBM2)
    assert ddr4.pj_per_bit_write == pytest.approx(5.049, abs=0.001)
    assert hbm2.pj_per_bit_write == pytest.approx(2.136, abs=0.001)
    assert hbm2.pj_per_bit_write > hbm2.pj_per_bit_read


# --- cost ----------------------------------------------------------------------------------------

def test_one_mib_transaction_is_timed_without_a_step_per_burst():
    """A transaction is timed in one go from its rows (vectorized over its bursts): counted
    in Python function calls, not in seconds, so a busy machine cannot fail it. 1 MiB is
    16,384 bursts of 64 B over 128 rows; measured 753 calls, ~5 a row."""
    model = DramChannelModel(DDR4)
    model.access(0, 0, 4096, is_write=False)  # first-use work out of the count
    calls = [0]

    def count(frame, event, arg):
        calls[0] += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        model.access(0, 8 * MiB, MiB, is_write=False)
    finally:
        sys.setprofile(None)
    bursts = MiB // 64
    assert calls[0] < bursts // 8  # a step per burst would take at least one call each


# --- power-down (the controller) ---------------------------------------------------------------

def _two_reads_apart(gap_ps: int, first_write: bool = False, **dram_keys):
    """A DRAM controller alone: 4 KiB read (or written) at t=0, another 4 KiB read `gap_ps`
    after the first ended; the run stops 1 us after the second. Returns (controller,
    [(start, end)], end)."""
    from arch.config import DramConfig
    from arch.dram import DramController
    from desim.module import Simulator

    sim = Simulator()
    dram = DramController("dram", sim, DramConfig(preset="DDR4-2400", **dram_keys))
    spans = []

    def reads():
        for wait, is_write in ((0, first_write), (gap_ps, False)):
            yield sim.env.timeout(wait)
            start = int(sim.env.now)
            yield from dram.transfer(4096, is_write=is_write)
            spans.append((start, int(sim.env.now)))
        yield sim.env.timeout(1_000_000)

    sim.env.process(reads())
    sim.run()
    return dram, spans, int(sim.env.now)


def test_power_down_wakes_up_in_txp_and_prices_idd3p_while_down():
    gap = 2_000_000  # 2 us idle between the reads
    awake, awake_spans, end = _two_reads_apart(gap)
    down, down_spans, down_end = _two_reads_apart(gap, power_down="active")
    txp_ps = 8 * 833  # DDR4-2400: tXP 8 tCK
    # the first read finds the channel up; the second waits tXP for the exit, nothing else
    assert down_spans[0] == awake_spans[0]
    (a0, a1), (d0, d1) = awake_spans[1], down_spans[1]
    assert d0 == a0 and d1 - d0 == (a1 - a0) + txp_ps
    assert down_end == end + txp_ps
    # down from a tCK after the first read's data (tRDPDEN) to the DRAM clock's edge after
    # the second arrives (its exit starts there), and from a tCK after the second's on
    first_end = down_spans[0][1]
    edge = -(-d0 // 833) * 833
    assert 0 < edge - d0 < 833
    assert down.powered_down_ps(0, down_end) == \
        (gap - 833) + (edge - d0) + (down_end - d1 - 833)
    assert down.powered_down_ps(first_end + 900, first_end + 1000) == 100  # a window inside
    assert down.powered_down_ps(first_end, first_end + 833) == 0
    assert down.actions["power_down_exits"] == 1 and "power_down_exits" not in awake.actions
    # standby: VDD * chips * (IDD3N awake, IDD3P down) + refresh, over the whole run
    e = DramEnergy.from_timing(DDR4)
    pd = down.powered_down_ps(0, down_end)
    want = (e.background_mw * (down_end - pd) + 1.2 * 8 * 37 * pd
            + e.refresh_mw * down_end) / 1000
    assert down.energy_pj({}, 0, down_end)["standby"] == pytest.approx(want, rel=1e-12)
    assert awake.energy_pj({}, 0, end)["standby"] == pytest.approx(
        (e.background_mw + e.refresh_mw) * end / 1000, rel=1e-12)
    assert awake.powered_down_ps(0, end) == 0


def test_power_down_lasts_tcke_and_starts_after_write_recovery():
    """JESD79-4: CKE stays low at least tCKE (6 tCK); a write's recovery (tWR 19 tCK after
    its data) comes before power-down entry, a read's tCK. A read arriving a tCK after the
    first read's power-down began (on a DRAM clock edge) waits to tCKE from the entry, then
    tXP; one arriving 1 ps after a write's data waits for no power-down at all."""
    tck = 833
    awake, awake_spans, _ = _two_reads_apart(0)
    entry = awake_spans[0][1] + tck          # the read's data end + tRDPDEN's tCK
    gap = -(-(entry + tck) // tck) * tck - awake_spans[0][1]   # arrive on the edge after it
    awake, awake_spans, _ = _two_reads_apart(gap)
    down, down_spans, _ = _two_reads_apart(gap, power_down="active")
    arrive = down_spans[1][0]
    assert arrive % tck == 0 and arrive - entry < 6 * tck
    assert down_spans[1][1] - awake_spans[1][1] == (entry + 6 * tck - arrive) + 8 * tck
    assert down.powered_down_ps(0, arrive) == arrive - entry
    awake, awake_spans, _ = _two_reads_apart(1, first_write=True)
    down, down_spans, _ = _two_reads_apart(1, first_write=True, power_down="precharge")
    assert down_spans == awake_spans and down.powered_down_ps(0, down_spans[1][0]) == 0
    assert "power_down_exits" not in down.actions


def test_a_transaction_starts_on_the_dram_clock():
    """Commands issue on the DRAM's clock (edges every tCK from 0): a read arriving 1 ps
    after time 0 starts at the next edge, 833 ps, and ends as one arriving there."""
    from arch.config import DramConfig
    from arch.dram import DramController
    from desim.module import Simulator

    ends = []
    for arrive in (1, 833):
        sim = Simulator()
        dram = DramController("dram", sim, DramConfig(preset="DDR4-2400"))

        def read(arrive=arrive, sim=sim, dram=dram):
            yield sim.env.timeout(arrive)
            yield from dram.transfer(64, is_write=False)
            ends.append(int(sim.env.now))

        sim.env.process(read())
        sim.run()
    raw = 833 + 36 * 833   # tRCD + CL + BL/2 on an idle bank, from the edge
    assert ends == [raw + 36 * 833 * 420 // (9364 - 420)] * 2   # and the refresh stretch


def test_power_down_waits_for_the_idle_timer():
    # 1,000 tCK of timer: a gap shorter than it never powers down, a longer one loses the timer
    timer_ps = 1000 * 833
    short, short_spans, _ = _two_reads_apart(timer_ps - 1, power_down="active",
                                             power_down_idle_cycles=1000)
    assert short.powered_down_ps(0, short_spans[1][0]) == 0
    long, long_spans, _ = _two_reads_apart(timer_ps + 5000, power_down="active",
                                           power_down_idle_cycles=1000)
    assert long.powered_down_ps(0, long_spans[1][0]) == 5000


def test_precharge_power_down_closes_the_open_rows_and_prices_idd2p():
    gap = 2_000_000
    active, active_spans, _ = _two_reads_apart(gap, power_down="active")
    closed, closed_spans, end = _two_reads_apart(gap, power_down="precharge")
    assert closed_spans[0] == active_spans[0]
    # the first read left rows open; powering down closed each (one PRE a bank) ...
    first = DramChannelModel(DDR4)
    first.access(0, 0, 4096, is_write=False)
    opened = sum(row >= 0 for row in first._open_row)
    assert closed.actions["precharges"] == opened == 4
    # ... so the second read activates again the 4 rows the active power-down kept open,
    # and ends one tRCD later (to within a clock: the bursts keep their slots)
    assert active.actions["activates"] == 4
    assert closed.actions["activates"] == active.actions["activates"] + opened == 8
    late = (closed_spans[1][1] - active_spans[1][1]) - DDR4.trcd * DDR4.tck_ps
    assert 0 <= late < DDR4.tck_ps
    e = DramEnergy.from_timing(DDR4)
    pd = closed.powered_down_ps(0, end)
    want = (e.background_mw * (end - pd) + 1.2 * 8 * 25 * pd + e.refresh_mw * end) / 1000
    assert closed.energy_pj({}, 0, end)["standby"] == pytest.approx(want, rel=1e-12)


def test_power_down_reads_yaml_off_and_asks_which_for_on():
    import yaml

    from arch.config import DramConfig
    from desim.configio import validate

    def read(text):
        return validate(DramConfig, yaml.safe_load(text), "arch.yaml")

    assert read("{preset: DDR4-2400, power_down: off}").power_down == "off"  # YAML's False
    assert read("{preset: DDR4-2400, power_down: precharge}").power_down == "precharge"
    with pytest.raises(ConfigError, match=r"arch\.yaml: power_down: .*active .*precharge"):
        read("{preset: DDR4-2400, power_down: on}")
    with pytest.raises(ConfigError, match=r"power_down_idle_cycles"):
        read("{preset: DDR4-2400, power_down: active, power_down_idle_cycles: -1}")


@settings(max_examples=25, deadline=None)
@given(gap=st.integers(0, 5_000_000), timer=st.integers(0, 3000),
       cuts=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_powered_down_time_adds_up_over_any_split_of_the_run(gap, timer, cuts):
    """The phases price standby over their own windows: split the run anywhere and the
    powered-down time (so the standby energy) of the parts adds up to the whole's."""
    dram, _, end = _two_reads_apart(gap, power_down="precharge", power_down_idle_cycles=timer)
    edges = sorted({0, end, *(int(c * end) for c in cuts)})
    parts = [dram.powered_down_ps(a, b) for a, b in zip(edges, edges[1:], strict=False)]
    assert sum(parts) == dram.powered_down_ps(0, end)
    assert all(0 <= p <= b - a for p, a, b in zip(parts, edges, edges[1:], strict=False))
    standby = [dram.energy_pj({}, a, b)["standby"] for a, b in zip(edges, edges[1:],
                                                                     strict=False)]
    assert sum(standby) == pytest.approx(dram.energy_pj({}, 0, end)["standby"], rel=1e-12)


# DRAMsim3's time for each case of benchmarks/dramsim3_compare.py (the last data beat, tCK),
# measured with DRAMsim3 2981759 built with its command trace, on a configuration written
# from the DDR4-2400 preset (benchmarks/DRAMSIM3.md). Its controller issues a transaction's
# first command 2 cycles after the transaction arrives.
DRAMSIM3_DDR4_2400 = {
    "read 64 B": 38, "read 512 B": 66, "read 4 KiB": 290, "read 64 KiB": 4130,
    "read 1 MiB": 68849, "write 64 B": 38, "write 4 KiB": 290, "write 64 KiB": 4130,
    "write 1 MiB": 69060, "two reads, one bank's two rows": 123,
    "read then write, 4 KiB each": 571,
    "write 4 KiB, then read 512 B of its rows": 341, "16 tiles: read 4 KiB, write 1 KiB": 5429,
    "16 tiles: read 16 KiB, write 4 KiB": 22016, "16 tiles: read 64 KiB, write 16 KiB": 86760,
    "reads only, 64 x 4 KiB": 16902}
DRAMSIM3_FRONT_END = 2


def _rule_cases(timing: DramTiming, measured: dict[str, int]) -> dict[str, float]:
    """desim without refresh, every arrival at 0, less DRAMsim3's time less its front end
    (tCK), for the cases the timing rules alone decide: the single transactions shorter
    than tREFI (DRAMsim3 refreshes none) and the two queued pairs."""
    from benchmarks.dramsim3_compare import cases, desim_cycles
    out = {}
    for name, transfers in cases(timing).items():
        theirs = measured[name] - DRAMSIM3_FRONT_END
        if (theirs < timing.trefi and len(transfers) == 1) or len(transfers) == 2:
            out[name] = desim_cycles(timing, transfers, queued=True, refresh=False) - theirs
    return out


def _ratios(timing: DramTiming, measured: dict[str, int]) -> dict[str, float]:
    """desim's time over DRAMsim3's for every case, with refresh as arch/dram.py averages
    it and each transaction asked for when the one before it ends."""
    from benchmarks.dramsim3_compare import cases, desim_cycles
    return {name: desim_cycles(timing, transfers) / measured[name]
            for name, transfers in cases(timing).items()}


def test_the_timing_rules_give_dramsim3s_times_where_no_refresh_falls():
    """A transaction on an idle channel, shorter than tREFI (DRAMsim3 refreshes none), and
    two queued one behind the other (a row conflict; a read then a write): desim without
    its refresh stretch gives DRAMsim3's time less its front end, to the cycle."""
    diffs = _rule_cases(DDR4, DRAMSIM3_DDR4_2400)
    assert len(diffs) == 10
    # but where DRAMsim3 reorders: a read after a write, its first burst in the group
    # written next to last, waits tWTR_L after that group's data (4 tCK before the last
    # write data) in desim, which issues in stream order: 9 - 4 against tWTR_S 3 after the
    # last, 2 tCK; DRAMsim3 (FR-FCFS) issues the read's other groups' bursts first
    assert diffs.pop("write 4 KiB, then read 512 B of its rows") == \
        DDR4.twtr_l - DDR4.twtr_s - DDR4.tccd_s == 2
    assert set(diffs.values()) == {0}, diffs


def test_long_streams_run_within_one_percent_of_dramsim3_and_tiles_of_16_kib_within_3():
    """With refresh, as arch/dram.py averages it, a 1 MiB stream ends within 1% of DRAMsim3
    (which refreshes every tREFI); tiles served one after another, as the accelerator asks
    for them, within 3% from 16 KiB on. Small tiles and back-to-back reads pay each
    transaction's CAS latency and first ACT, which DRAMsim3's queue hides (20% and 9%)."""
    ratios = _ratios(DDR4, DRAMSIM3_DDR4_2400)
    for name in ("read 1 MiB", "write 1 MiB"):
        assert abs(ratios[name] - 1) < 0.01, name
    for tile in ("16 KiB, write 4 KiB", "64 KiB, write 16 KiB"):
        assert abs(ratios[f"16 tiles: read {tile}"] - 1) < 0.03, tile
    assert 1.19 < ratios["16 tiles: read 4 KiB, write 1 KiB"] < 1.21
    assert 1.08 < ratios["reads only, 64 x 4 KiB"] < 1.10


# The same cases on configurations written from the LPDDR4-3200 and HBM2 presets (DRAMsim3
# 2981759, CMD_TRACE build; benchmarks/DRAMSIM3.md):
#   python -m benchmarks.dramsim3_compare dramsim3main --preset LPDDR4-3200 --preset HBM2
DRAMSIM3_LPDDR4_3200 = {
    "read 64 B": 75, "read 512 B": 187, "read 4 KiB": 1083, "read 64 KiB": 17147,
    "read 1 MiB": 277897, "write 64 B": 61, "write 4 KiB": 1069, "write 64 KiB": 17207,
    "write 1 MiB": 279339, "two reads, one bank's two rows": 377,
    "read then write, 4 KiB each": 2108,
    "write 4 KiB, then read 512 B of its rows": 1241, "16 tiles: read 4 KiB, write 1 KiB": 22266,
    "16 tiles: read 16 KiB, write 4 KiB": 87307, "16 tiles: read 64 KiB, write 16 KiB": 348308,
    "reads only, 64 x 4 KiB": 69458}
DRAMSIM3_HBM2 = {
    "read 64 B": 32, "read 512 B": 46, "read 4 KiB": 158, "read 64 KiB": 2078,
    "read 1 MiB": 35615, "write 64 B": 22, "write 4 KiB": 148, "write 64 KiB": 2068,
    "write 1 MiB": 35570, "two reads, one bank's two rows": 94,
    "read then write, 4 KiB each": 292,
    "write 4 KiB, then read 512 B of its rows": 184, "16 tiles: read 4 KiB, write 1 KiB": 2766,
    "16 tiles: read 16 KiB, write 4 KiB": 11369, "16 tiles: read 64 KiB, write 16 KiB": 44660,
    "reads only, 64 x 4 KiB": 8831}


def test_lpddr4_timing_rules_give_dramsim3s_times_but_jesd209_4s_write_rules():
    """LPDDR4-3200: every read under tREFI and the row conflict to the cycle. Writes end
    tDQSS (1 tCK) later in desim, whose write data starts tDQSS after WL (JESD209-4; DRAMsim3
    starts it at WL); the write after a read 8 tCK later: that tCK, and a READ to WRITE 7 tCK
    longer than DRAMsim3's (RL + BL/2 - WL + tRTRS 1 there; JESD209-4's tDQSCK, tWPRE and
    tRPST here, benchmarks/DRAMSIM3.md)."""
    diffs = _rule_cases(LPDDR4, DRAMSIM3_LPDDR4_3200)
    assert len(diffs) == 8  # 64 KiB takes longer than tREFI here
    assert diffs.pop("read then write, 4 KiB each") == 7 + LPDDR4.tdqss
    assert diffs.pop("write 64 B") == diffs.pop("write 4 KiB") == LPDDR4.tdqss
    assert diffs.pop("write 4 KiB, then read 512 B of its rows") == LPDDR4.tdqss
    assert set(diffs.values()) == {0}, diffs


def test_hbm2_timing_rules_give_dramsim3s_times_but_its_reordering():
    """HBM2: one burst to the cycle. From 8 bursts on desim issues the CAS commands in
    stream order, so the burst of the second, third and fourth bank group waits for its
    ACT, tRRD_S (4) after the one before, where DRAMsim3 fills each wait with row hits of the
    groups already open: 3 x (tRRD_S - BL/2) = 6 cycles; the read then the write, whose
    rows are each a conflict, 22."""
    diffs = _rule_cases(HBM2, DRAMSIM3_HBM2)
    assert len(diffs) == 10
    assert diffs.pop("read 64 B") == diffs.pop("write 64 B") == 0
    assert diffs.pop("read then write, 4 KiB each") == 22
    assert set(diffs.values()) == {3 * (HBM2.trrd_s - HBM2.burst_cycles)}, diffs


@pytest.mark.parametrize("timing, measured, stream, tiles", [
    (LPDDR4, DRAMSIM3_LPDDR4_3200, 0.02, (0.02, 0.02)),
    (HBM2, DRAMSIM3_HBM2, 0.015, (0.10, 0.02))])
def test_lpddr4_and_hbm2_streams_and_tiles_run_near_dramsim3(timing, measured, stream, tiles):
    """With refresh as arch/dram.py averages it: 1 MiB streams end up to 1.6% (LPDDR4) and
    1.3% (HBM2) before DRAMsim3, whose refresh also waits for the banks' precharge and opens
    them again; tiles of 64 KiB within 2%; 16 KiB ones within 2% (LPDDR4) and 8.3% longer
    (HBM2: each tile's ACT ramp, above, which DRAMsim3 reorders away). Small tiles and
    back-to-back reads pay each transaction's latency, which DRAMsim3's queue hides."""
    ratios = _ratios(timing, measured)
    for name in ("read 1 MiB", "write 1 MiB"):
        assert 1 - stream < ratios[name] < 1, name
    assert abs(ratios["16 tiles: read 16 KiB, write 4 KiB"] - 1) < tiles[0]
    assert abs(ratios["16 tiles: read 64 KiB, write 16 KiB"] - 1) < tiles[1]
    assert 1.05 < ratios["16 tiles: read 4 KiB, write 1 KiB"] < 1.35
    assert 1.05 < ratios["reads only, 64 x 4 KiB"] < 1.25


_SCHEMES = [":".join(p) for p in itertools.permutations(("ro", "ba", "co", "bg", "ch"))]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PRESETS)), st.sampled_from([1, 2, 8]), st.sampled_from(_SCHEMES),
       st.integers(0, 2**40), st.sampled_from([1, 3, 40, 600, 5000]), st.integers(0, 10**6))
def test_channel_and_bank_ranges_are_the_decoded_bursts(preset, channels, scheme, where, bursts,
                                                        size):
    """The arithmetic that finds a transaction's bursts per channel and per bank without
    decoding each (`channel_ranges`, `_Squeeze.bounds`, the row visits of `_access_range`)
    agrees with `decode_bursts` on every burst, for every field order."""
    import numpy as np

    timing = PRESETS[preset]
    mapping = AddressMapping(timing, scheme, channels=channels)
    nbytes = 1 + size % (bursts * timing.bytes_per_burst)
    address = where % (mapping.capacity_bytes - nbytes)
    decoded = mapping.decode_bursts(address, nbytes)
    ranges = mapping.channel_ranges(address, nbytes)
    assert [c for c, _, _ in ranges] == np.unique(decoded["ch"]).tolist()
    squeeze = mapping.bank_squeeze
    for c, lo, hi in ranges:
        mine = decoded["ch"] == c
        local = np.arange(lo, hi + 1)
        assert len(local) == mine.sum()
        field = {name: (local >> mapping.local_shift[name]) & ((1 << mapping.bits[name]) - 1)
                 for name in ("bg", "ro")}
        assert field["bg"].tolist() == decoded["bg"][mine].tolist()
        assert field["ro"].tolist() == decoded["row"][mine].tolist()
        bounds = squeeze.bounds(lo, hi, mapping.bank_patterns)
        for (bank, _, pattern), (first, last) in zip(mapping.banks, bounds, strict=True):
            in_bank = local[(decoded["bank"][mine] == bank)]
            if first > last:
                assert not len(in_bank)
                continue
            first, last = squeeze(first), squeeze(last)
            expanded = [squeeze.expand(m) | pattern for m in range(first, last + 1)]
            assert expanded == in_bank.tolist()
            rows = [(m >> mapping.bank_row_shift) & (timing.rows - 1)
                    for m in range(first, last + 1)]
            assert rows == decoded["row"][mine][decoded["bank"][mine] == bank].tolist()
