"""`desim.gains`: a ratio split part by part, in closed form."""

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from desim.gains import energy_gains, gains, time_gains


def _run(seconds: float, joules: dict[str, float], bound: dict[str, float]) -> dict:
    """A summary.json run entry with only what `desim.gains` reads."""
    return {"seconds": seconds, "energy_j": sum(joules.values()),
            "energy_by_component_j": joules, "time_by_busiest_part": bound}


BASE = _run(1000, {"dram": 6.0, "noc": 2.0, "macs": 2.0}, {"dram": 0.2, "pe_array": 0.8})
RUN = _run(400, {"dram": 3.0, "noc": 1.5, "macs": 0.5, "selector": 0.0},
           {"dram": 0.5, "pe_array": 0.25})


def test_energy_gains_split_the_ratio_by_component():
    """Base 6 + 2 + 2 = 10 J, run 3 + 1.5 + 0.5 = 5 J: ratio 2. DRAM halves and gives
    3 of the 5 J saved; were it free the run would take 2 J, a ratio of 5."""
    table = energy_gains(BASE, RUN)
    assert list(table.index) == ["dram", "noc", "macs", "total"]  # no selector: 0 J in both
    assert table.loc["total"].tolist()[:4] == [10.0, 5.0, 2.0, 1.0]
    assert table.loc["dram"].tolist() == [6.0, 3.0, 2.0, 0.6, 0.6, 5.0]
    assert table.loc["noc"].tolist() == [2.0, 1.5, 2.0 / 1.5, 0.3, 0.1, 10 / 3.5]
    assert table.loc["macs", "shrink"] == 4.0
    assert table.loc["macs", "share_of_saving"] == pytest.approx(0.3)
    assert table.loc[["dram", "noc", "macs"], "share_of_saving"].sum() == pytest.approx(1.0)


def test_on_chip_gains_leave_dram_out():
    """On chip: 4 J against 2 J, the same ratio of 2; the NoC were it free: 4 / 0.5 = 8."""
    table = energy_gains(BASE, RUN, on_chip=True)
    assert "dram" not in table.index
    assert table.loc["total", "shrink"] == 2.0
    assert table.loc["noc", "ratio_if_free"] == 8.0
    assert table.loc["noc", "share_of_saving"] == 0.25


def test_time_gains_split_the_speedup_by_binding_part():
    """1000 s (200 DRAM-bound, 800 PE-bound) against 400 (200 and 100, 100 bound by
    nothing): the PE-bound time shrinks 8x and gives 700 of the 600 s saved; the
    DRAM-bound stays; speedup 2.5, 5.0 were the DRAM-bound layer-phases free. Seconds, not
    cycles: two designs may run at two clocks."""
    table = time_gains(BASE, RUN)
    assert list(table.index) == ["dram", "pe_array", "unattributed", "total"]
    assert table.loc["dram"].tolist() == [200.0, 200.0, 1.0, 0.5, 0.0, 5.0]
    assert table.loc["pe_array", "shrink"] == 8.0
    assert table.loc["pe_array", "share_of_saving"] == pytest.approx(700 / 600)
    assert table.loc["unattributed", "baseline"] == 0.0
    assert table.loc["unattributed", "shrink"] == 0.0
    assert table.loc["total", "shrink"] == 2.5


def test_time_gains_keep_a_small_unattributed_rest_and_drop_parts_that_bound_nothing():
    """Base: 1000 s, 99.9% DRAM-bound: the 1 s no part bound is its own row (not lost as
    rounding); the NoC bound nothing in either run and is left out. Run: 500 s, all
    DRAM-bound: the DRAM-bound time shrinks 999 / 500."""
    base = _run(1000, {"dram": 1.0}, {"dram": 0.999, "noc": 0.0})
    run = _run(500, {"dram": 1.0}, {"dram": 1.0, "noc": 0.0})
    table = time_gains(base, run)
    assert list(table.index) == ["dram", "unattributed", "total"]
    assert table.loc["unattributed", "baseline"] == pytest.approx(1.0)
    assert table.loc["unattributed", "run"] == 0.0
    assert table.loc["dram", "shrink"] == pytest.approx(999 / 500)
    assert table.loc["total", "shrink"] == pytest.approx(2.0)


def test_a_part_that_is_the_whole_run_caps_nothing_when_free():
    """Free, the only part would leave the run nothing: an infinite ratio, not an error;
    nothing saved gives no shares of the saving."""
    table = gains({"a": 1.0}, {"a": 1.0})
    assert math.isinf(table.loc["a", "ratio_if_free"])
    assert math.isnan(table.loc["a", "share_of_saving"])
    assert table.loc["total", "shrink"] == 1.0


@given(st.lists(st.tuples(st.floats(0.0, 1e3), st.floats(0.0, 1e3)), min_size=1, max_size=6))
def test_the_split_adds_up_whatever_the_amounts(amounts):
    """The shares of the run add up to 1, those of the saving to 1 where the run saves and
    to -1 where it spends more (each part's sign its own change's);
    a part made free never lowers the ratio, and lifts it by its share of the run:
    B / (R - r) = (B / R) / (1 - r / R); the total's shrink is the two totals' ratio."""
    base = {f"p{i}": b for i, (b, _) in enumerate(amounts)}
    run = {f"p{i}": r for i, (_, r) in enumerate(amounts)}
    assume(sum(run.values()) > 1e-6 and sum(base.values()) > 1e-6)
    table = gains(base, run)
    parts, total = table.drop("total"), table.loc["total"]
    assert total["shrink"] == pytest.approx(sum(base.values()) / sum(run.values()))
    assert parts["share_of_run"].sum() == pytest.approx(1.0)
    saved = sum(base.values()) - sum(run.values())
    if abs(saved) > 1e-6 * sum(base.values()):
        assert parts["share_of_saving"].sum() == pytest.approx(math.copysign(1.0, saved))
        assert total["share_of_saving"] == math.copysign(1.0, saved)
    for _, row in parts.iterrows():
        if row["share_of_run"] < 1 - 1e-9:
            assert row["ratio_if_free"] == pytest.approx(
                total["shrink"] / (1 - row["share_of_run"]), rel=1e-6)
            assert row["ratio_if_free"] >= total["shrink"] * (1 - 1e-12)


def test_a_part_that_grew_has_a_negative_share_when_the_total_grew_too():
    """Base 6 + 4 = 10 J, run 8 + 3 = 11 J: 1 J more. DRAM grew by 2 J, -200% of the
    1 J total change; the NoC shrank by 1 J, +100%; they add up to -100%, the total's row,
    which says the run spends more. (DRAM's share had read +200%: (6 - 8) / (10 - 11).)"""
    table = gains({"dram": 6.0, "noc": 4.0}, {"dram": 8.0, "noc": 3.0})
    assert table.loc["dram", "share_of_saving"] == pytest.approx(-2.0)
    assert table.loc["noc", "share_of_saving"] == pytest.approx(1.0)
    assert table.loc["total", "share_of_saving"] == -1.0
    assert table.loc[["dram", "noc"], "share_of_saving"].sum() == pytest.approx(-1.0)
