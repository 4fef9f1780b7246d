"""How the province bench attributes devices to collectors across a ring change
(`orchestration.cluster_run.owners_across`): by wall clock on the "before" side, so a
backlog replayed after a node loss does not pass for the old ring's routing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.cluster_run import Delivered, Judged, moved_share, owners_across

AT = 1_000.0  # the ring changes (epoch seconds)


def test_a_backlog_replayed_after_the_change_is_not_taken_for_the_old_owner() -> None:
    # d1 lived on c1; its reading of t=990 sat in its outbox through a node loss and was
    # published (and routed, to c5) after the add at t=1000. By reading time its
    # "owner before" is c5 and the move is missed; by delivery time it is c1.
    delivered: Delivered = {"d1": [(985.0, "c1"), (1_004.0, "c5"), (1_021.0, "c5")]}
    judged: Judged = {"d1": [(980_000, "c1"), (990_000, "c5"), (1_020_000, "c5")]}
    assert owners_across(delivered, judged, AT, 10.0) == {"d1": ("c1", "c5")}
    assert moved_share(delivered, judged, AT, 10.0) == 1.0


def test_a_reading_read_before_the_change_does_not_count_as_after() -> None:
    # the first reading delivered after the add was read before it (routed before it,
    # sat in c1's queue): "after" is the first reading read settle_s after the change
    delivered: Delivered = {"d1": [(995.0, "c1"), (1_002.0, "c1"), (1_012.0, "c2")]}
    judged: Judged = {"d1": [(994_000, "c1"), (999_000, "c1"), (1_011_000, "c2")]}
    assert owners_across(delivered, judged, AT, 10.0) == {"d1": ("c1", "c2")}


def test_devices_seen_on_one_side_only_are_left_out() -> None:
    delivered: Delivered = {"old": [(990.0, "c1")], "new": [(1_015.0, "c2")],
                            "both": [(990.0, "c1"), (1_015.0, "c1")]}
    judged: Judged = {"old": [(989_000, "c1")], "new": [(1_014_000, "c2")],
                      "both": [(989_000, "c1"), (1_014_000, "c1")]}
    assert owners_across(delivered, judged, AT, 10.0) == {"both": ("c1", "c1")}
    assert moved_share(delivered, judged, AT, 10.0) == 0.0
    assert moved_share({}, {}, AT, 10.0) is None


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(
    st.sampled_from([f"d{i}" for i in range(8)]),
    st.lists(st.tuples(st.integers(900, 1_100), st.integers(900, 1_100),
                       st.sampled_from(["c1", "c2", "c3"])), min_size=1, max_size=6)))
def test_the_share_is_the_moved_fraction_of_devices_seen_on_both_sides(
        readings: dict[str, list[tuple[int, int, str]]]) -> None:
    delivered: Delivered = {d: [(float(w), c) for w, _r, c in rs]
                            for d, rs in readings.items()}
    judged: Judged = {d: [(int(r * 1000), c) for _w, r, c in rs] for d, rs in readings.items()}
    owners = owners_across(delivered, judged, AT, 10.0)
    share = moved_share(delivered, judged, AT, 10.0)
    if not owners:
        assert share is None
        return
    assert share is not None and 0.0 <= share <= 1.0
    assert share * len(owners) == sum(old != new for old, new in owners.values())
    for dev, (old, new) in owners.items():
        assert old == max(e for e in delivered[dev] if e[0] < AT)[1]
        assert new == min(e for e in judged[dev] if e[0] >= 1_010_000)[1]
