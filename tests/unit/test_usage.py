"""Node- and core-hours and the estimated cost of a run, against figures worked out by hand."""
from __future__ import annotations

import pytest

from dmscontract.manifest import TaskEntry
from dmscontract.prices import PriceTable, PriceTableError, cores_from_name
from dmscontract.usage import NodeFacts, usage_of


def task(task_id, start, end, node, nodes=1):
    return TaskEntry(task_id, "completed", "success", 0, 0, 0, node, start, end, None, {}, nodes=nodes)


# Four tasks, times by hand:
#   a on n1 (dedicated D4s_v5, 4 cores): 00:00 -> 01:30   = 1.5 h
#   b on n1:                             01:00 -> 01:45   = 0.75 h
#   c on n2 (low priority):              00:00 -> 02:00   = 2.0 h
#   d never started                                        = 0 h
# On a pool of 2 slots per node, each task holds half a node: dedicated 2.25 h / 2 = 1.125 node-hours,
# low priority 2.0 / 2 = 1.0; cores 4 each: 4.5 and 4.0 core-hours.
TASKS = [task("a", "2026-12-01T00:00:00Z", "2026-12-01T01:30:00Z", "n1"),
         task("b", "2026-12-01T01:00:00Z", "2026-12-01T01:45:00Z", "n1"),
         task("c", "2026-12-01T00:00:00Z", "2026-12-01T02:00:00Z", "n2"),
         task("d", None, None, None)]
NODES = {"n1": NodeFacts("Standard_D4s_v5", True), "n2": NodeFacts("Standard_D4s_v5", False)}
PRICES = PriceTable.parse('{"currency": "USD", "vm_sizes": {"standard_d4s_v5": {"dedicated": 0.2, "low_priority": 0.04}}}')


def test_node_and_core_hours_by_vm_size_and_priority_are_the_hand_computed_figures():
    usage = usage_of(TASKS, NODES, "standard_d2s_v3", 2, PriceTable())
    assert usage.node_hours == pytest.approx(2.125)
    assert usage.core_hours == pytest.approx(8.5)
    lines = {(line.vm_size, line.priority): line for line in usage.lines}
    assert lines[("standard_d4s_v5", "dedicated")].node_hours == pytest.approx(1.125)
    assert lines[("standard_d4s_v5", "dedicated")].tasks == 2
    assert lines[("standard_d4s_v5", "low_priority")].core_hours == pytest.approx(4.0)
    assert usage.estimated_cost is None and usage.currency is None, "no price table: no cost is claimed"


def test_a_price_table_turns_them_into_a_cost_and_a_missing_price_claims_none():
    usage = usage_of(TASKS, NODES, "standard_d2s_v3", 2, PRICES)
    assert usage.estimated_cost == pytest.approx(1.125 * 0.2 + 1.0 * 0.04) and usage.currency == "USD"
    only_dedicated = PriceTable.parse('{"currency": "USD", "vm_sizes": {"standard_d4s_v5": {"dedicated": 0.2}}}')
    partial = usage_of(TASKS, NODES, "standard_d2s_v3", 2, only_dedicated)
    assert partial.estimated_cost is None, "one line without a price: no total is claimed"
    assert [line.estimated_cost for line in partial.lines] == [pytest.approx(0.225), None]


def test_an_mpi_task_holds_all_its_nodes_and_a_vanished_node_is_priced_at_the_pool_size_as_unknown():
    mpi = [task("main", "2026-12-01T00:00:00Z", "2026-12-01T00:30:00Z", "gone", nodes=4)]
    usage = usage_of(mpi, {}, "Standard_HB120rs_v3", 1, PRICES)
    assert usage.node_hours == pytest.approx(2.0) and usage.core_hours == pytest.approx(240.0)
    assert [(line.vm_size, line.priority) for line in usage.lines] == [("standard_hb120rs_v3", "unknown")]
    assert usage.estimated_cost is None


def test_cores_come_from_azures_size_names_and_the_table_overrides_them():
    assert [cores_from_name(n) for n in ("Standard_D4s_v5", "standard_e64-16ds_v4", "Standard_NC24ads_A100_v4", "weird")] == \
        [4, 16, 24, None]
    assert PriceTable.parse('{"vm_sizes": {"weird": {"cores": 3}}}').cores("WEIRD") == 3


def test_a_price_table_that_does_not_fit_names_each_problem():
    with pytest.raises(PriceTableError) as bad:
        PriceTable.parse('{"currency": "", "vm_sizes": {"d2": {"dedicated": "cheap", "cores": 0}}, "tax": 1}')
    assert bad.value.errors == ["PRICE_TABLE.currency: must be text such as 'USD'",
                                "PRICE_TABLE.tax: is not a field here (currency, vm_sizes)",
                                "PRICE_TABLE.vm_sizes.d2.cores: must be a whole number of at least 1",
                                "PRICE_TABLE.vm_sizes.d2.dedicated: must be a price per node-hour, a number of at least 0"]
    with pytest.raises(PriceTableError, match="is not JSON"):
        PriceTable.parse("{")
