"""The take rule (engine/eligibility.py): apps and durabletask's work-item filters, as its reference
backend (`durabletask.testing`) matches them."""

from __future__ import annotations

from dapr_workflows_component.engine.eligibility import (
    ACTIVITY,
    ENTITY,
    ORCHESTRATION,
    Eligibility,
    WorkFilters,
    WorkLabel,
    describe,
    may_take,
)
from dapr_workflows_component.engine.work_items import InstanceWork, WorkItems
from dapr_workflows_component.protos import durabletask_dialect_pb2 as mpb

ORDER = WorkLabel(ORCHESTRATION, "order")
ORDER_V1 = WorkLabel(ORCHESTRATION, "order", "1.0")
ORDER_V2 = WorkLabel(ORCHESTRATION, "order", "2.0")
PAY = WorkLabel(ACTIVITY, "pay")
COUNTER = WorkLabel(ENTITY, "counter")


def test_a_worker_without_filters_takes_every_kind_and_name() -> None:
    anyone = Eligibility()
    assert all(may_take(anyone, item, ()) for item in (ORDER, ORDER_V2, PAY, COUNTER))


def test_filters_take_only_the_names_listed_per_kind() -> None:
    worker = Eligibility(filters=WorkFilters.of([("order", [])], [("pay", [])]))
    assert may_take(worker, ORDER, ()) and may_take(worker, ORDER_V2, ())  # no versions: any
    assert may_take(worker, PAY, ())
    assert not may_take(worker, WorkLabel(ORCHESTRATION, "refund"), ())
    assert not may_take(worker, WorkLabel(ACTIVITY, "order"), ())  # a name is per kind
    assert not may_take(worker, COUNTER, ())  # no entities listed: none


def test_versions_listed_are_matched_exactly_and_no_version_counts_as_empty() -> None:
    strict = Eligibility(filters=WorkFilters.of([("order", ["2.0"])], [("pay", ["2.0"])]))
    assert may_take(strict, ORDER_V2, ())
    assert not may_take(strict, ORDER_V1, ())
    assert not may_take(strict, ORDER, ())
    unversioned = Eligibility(filters=WorkFilters.of([("order", [""])]))
    assert may_take(unversioned, ORDER, ()) and not may_take(unversioned, ORDER_V1, ())


def test_filters_parsed_from_a_durabletask_request() -> None:
    req = mpb.GetWorkItemsRequest()
    assert WorkFilters.from_request(req) is None  # sent none: everything
    req.workItemFilters.SetInParent()
    empty = WorkFilters.from_request(req)
    assert empty is not None and not empty.accepts(ORDER) and not empty.accepts(PAY)
    req.workItemFilters.orchestrations.add(name="order", versions=["1.0"])
    req.workItemFilters.orchestrations.add(name="order", versions=["2.0"])  # merged, as the reference does
    req.workItemFilters.activities.add(name="pay")
    req.workItemFilters.entities.add(name="counter")
    filters = WorkFilters.from_request(req)
    assert filters is not None
    assert filters.accepts(ORDER_V1) and filters.accepts(ORDER_V2) and not filters.accepts(ORDER)
    assert filters.accepts(PAY) and filters.accepts(COUNTER)
    assert filters.entity_names() == {"counter"}


def test_work_of_an_app_goes_to_its_workers_and_to_unnamed_ones_only_while_none_is_connected() -> None:
    quote = WorkLabel(ACTIVITY, "quote", app="pricing")
    assert may_take(Eligibility(app="pricing"), quote, {"pricing"})
    assert not may_take(Eligibility(app="shipping"), quote, {"pricing", "shipping"})
    assert may_take(Eligibility(), quote, {"shipping"})  # no pricing worker: an unnamed one may
    assert not may_take(Eligibility(), quote, {"pricing"})
    assert may_take(Eligibility(app="shipping"), WorkLabel(ACTIVITY, "quote"), {"shipping"})  # any app


def test_app_and_filters_both_apply() -> None:
    quote = WorkLabel(ACTIVITY, "quote", app="pricing")
    assert not may_take(Eligibility("pricing", WorkFilters.of(activities=[("pack", [])])), quote, {"pricing"})
    assert may_take(Eligibility("pricing", WorkFilters.of(activities=[("quote", [])])), quote, {"pricing"})


def test_work_not_known_yet_goes_to_any_worker() -> None:
    assert may_take(Eligibility("pricing", WorkFilters.of()), None, {"pricing"})


def test_what_a_waiting_item_waits_for_reads_plainly() -> None:
    quote = WorkLabel(ACTIVITY, "quote", app="pricing")
    assert describe(quote) == "of app 'pricing' that handles activity 'quote'"
    assert describe(ORDER_V2) == "that handles orchestration 'order' version '2.0'"


def test_entity_work_is_labelled_by_its_name_and_filtered_as_the_reference_backend_does() -> None:
    # The reference backend's rule (durabletask.testing): no filters take every entity; filters that
    # list no entities take none; otherwise only the entities named. (Its module cannot be imported
    # beside ours in one process: both register the same protobuf names. tests/test_work_item_filters.py
    # runs the same scenario on the reference backend itself.)
    items = WorkItems()
    assert items.label_in(InstanceWork("@counter@k"), "durabletask") == COUNTER
    assert items.label_in(InstanceWork("@counter@k"), "durabletask") == COUNTER  # kept
    assert items.label_in(InstanceWork("@a@b"), "dapr") is None  # an ordinary workflow ID there
    assert items.label_in(InstanceWork("plain"), "durabletask") is None

    def request(entities: list[str] | None) -> mpb.GetWorkItemsRequest:
        req = mpb.GetWorkItemsRequest()
        if entities is not None:
            req.workItemFilters.orchestrations.add(name="order")
            for name in entities:
                req.workItemFilters.entities.add(name=name)
        return req

    expected = {
        None: {"counter": True, "account": True, "other": True},
        (): {"counter": False, "account": False, "other": False},
        ("counter",): {"counter": True, "account": False, "other": False},
        ("counter", "account"): {"counter": True, "account": True, "other": False},
    }
    for entities, takes in expected.items():
        worker = Eligibility(
            filters=WorkFilters.from_request(request(None if entities is None else list(entities)))
        )
        for name, allowed in takes.items():
            label = WorkItems().label_in(InstanceWork(f"@{name}@k"), "durabletask")
            assert may_take(worker, label, ()) == allowed, (entities, name)
