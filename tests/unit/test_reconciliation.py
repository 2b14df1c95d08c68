"""reconciliation.plan: what the renew timer changes so GRAPH_SUBSCRIPTIONS, the table and Graph agree."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.model.resources import DesiredSubscription
from shared.model.subscription import CREATING, FAILED
from shared.reconcile.plan import CREATING_GRACE, LIST_EVERY, LIST_PAGE_SIZE, Plan, listing_due, plan, sort_pending
from shared.stores.pending import PENDING_GRACE, PendingCreation

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
OUR_URL = "https://webhooks.example.com/api/notifications?code=function-key"
DRIVE = "drives/b!dGVzdC1kcml2ZS1vbmU/root"
OTHER_DRIVE = "drives/b!b3RoZXItZHJpdmU/root"
WANT = DesiredSubscription(DRIVE, "updated")


def test_a_desired_subscription_with_no_record_is_created():
    result = plan([WANT], [], [], NOW, OUR_URL)

    assert result.create == [WANT]
    assert (result.renew, result.recreate, result.delete, result.delete_remote) == ([], [], [], [])


def test_a_fresh_subscription_is_left_alone(make_record, make_remote):
    result = plan([WANT], [make_record()], [make_remote()], NOW, OUR_URL)

    assert result == Plan()


def test_a_subscription_past_half_its_lifetime_is_renewed(make_record, make_remote):
    record = make_record(expires_at=NOW + timedelta(days=10))

    result = plan([WANT], [record], [make_remote()], NOW, OUR_URL)

    assert result.renew == [record]
    assert (result.create, result.recreate, result.delete, result.delete_remote) == ([], [], [], [])


def test_a_record_without_an_expiry_is_renewed(make_record, make_remote):
    record = make_record(expires_at=None)

    assert plan([WANT], [record], [make_remote()], NOW, OUR_URL).renew == [record]


def test_a_subscription_graph_no_longer_has_is_recreated(make_record):
    record = make_record()

    result = plan([WANT], [record], [], NOW, OUR_URL)

    assert result.recreate == [record]
    assert (result.create, result.renew, result.delete) == ([], [], [])


def test_a_subscription_listed_only_under_another_url_is_recreated(make_record, make_remote):
    record = make_record()
    moved = make_remote(notification_url="https://old-host.example.com/api/notifications")

    assert plan([WANT], [record], [moved], NOW, OUR_URL).recreate == [record]


def test_a_record_no_longer_desired_is_deleted(make_record, make_remote):
    record = make_record()

    result = plan([], [record], [make_remote()], NOW, OUR_URL)

    assert result.delete == [record]
    # Deleting the record deletes its subscription; it is not listed twice.
    assert result.delete_remote == []
    assert result.create == []


def test_a_remote_orphan_with_our_url_is_deleted(make_remote):
    orphan = make_remote(id="11111111-0000-0000-0000-000000000001", resource=OTHER_DRIVE)

    result = plan([], [], [orphan], NOW, OUR_URL)

    assert result.delete_remote == [orphan.id]


def test_another_apps_subscriptions_are_never_touched(make_remote):
    theirs = [
        make_remote(id="22222222-0000-0000-0000-000000000001", notification_url="https://other-app.example.com/hook"),
        make_remote(
            id="22222222-0000-0000-0000-000000000002",
            resource=OTHER_DRIVE,
            notification_url="https://other-app.example.com/hook",
        ),
    ]

    result = plan([WANT], [], theirs, NOW, OUR_URL)

    assert result.create == [WANT]
    assert result.delete_remote == []


def test_a_creating_record_younger_than_the_grace_period_is_left_to_its_run(make_record, make_remote):
    record = make_record(status=CREATING, subscription_id="", expires_at=None, updated_at=NOW - timedelta(seconds=90))
    just_created = make_remote(id="33333333-0000-0000-0000-000000000001")

    result = plan([WANT], [record], [just_created], NOW, OUR_URL)

    assert result == Plan()


def test_a_creating_record_older_than_the_grace_period_is_created_again(make_record):
    record = make_record(
        status=CREATING, subscription_id="", expires_at=None, updated_at=NOW - CREATING_GRACE - timedelta(seconds=1)
    )

    result = plan([WANT], [record], [], NOW, OUR_URL)

    assert result.create == [WANT]
    assert result.recreate == []


def test_a_dead_creation_is_retried_by_the_next_five_minute_tick(make_record):
    def creating(age):
        return make_record(status=CREATING, subscription_id="", expires_at=None, updated_at=NOW - age)

    # Longer than two handshakes of at most 10 s each, shorter than the 5-minute tick.
    assert 2 * timedelta(seconds=10) < CREATING_GRACE < timedelta(minutes=5)
    assert plan([WANT], [creating(CREATING_GRACE - timedelta(seconds=1))], [], NOW, OUR_URL).create == []
    assert plan([WANT], [creating(timedelta(minutes=5))], [], NOW, OUR_URL).create == [WANT]


def test_a_failed_creation_is_retried_on_the_next_tick_however_recent(make_record):
    record = make_record(status=FAILED, subscription_id="", expires_at=None, updated_at=NOW - timedelta(seconds=1))

    assert plan([WANT], [record], [], NOW, OUR_URL).create == [WANT]


def test_a_failed_recreation_keeps_its_old_id_and_is_recreated_on_the_next_tick(make_record):
    record = make_record(status=FAILED, updated_at=NOW - timedelta(seconds=1))

    result = plan([WANT], [record], None, NOW, OUR_URL)

    assert result.recreate == [record]
    assert result.create == []


def test_a_dead_recreation_is_recreated_not_created_afresh(make_record, make_remote):
    record = make_record(status=CREATING, updated_at=NOW - timedelta(minutes=5))

    result = plan([WANT], [record], [make_remote()], NOW, OUR_URL)

    assert result.recreate == [record]
    assert (result.create, result.delete_remote) == ([], [])


def test_an_earlier_expiry_at_graph_wins_over_the_table(make_record, make_remote):
    record = make_record(expires_at=NOW + timedelta(days=29))
    listed = make_remote(expires_at=NOW + timedelta(days=2))

    assert plan([WANT], [record], [listed], NOW, OUR_URL).renew == [record]


def test_a_later_expiry_at_graph_does_not_delay_a_due_renewal(make_record, make_remote):
    record = make_record(expires_at=NOW + timedelta(days=2))
    listed = make_remote(expires_at=NOW + timedelta(days=29))

    assert plan([WANT], [record], [listed], NOW, OUR_URL).renew == [record]


def test_without_graphs_list_nothing_is_recreated_or_deleted_remotely(make_record):
    fresh = make_record()
    due_want = DesiredSubscription(OTHER_DRIVE, "updated")
    due = make_record(resource=OTHER_DRIVE, subscription_id="b", expires_at=NOW + timedelta(days=1))

    result = plan([WANT, due_want], [fresh, due], None, NOW, OUR_URL)

    assert result.renew == [due]
    assert (result.create, result.recreate, result.delete, result.delete_remote) == ([], [], [], [])


def test_a_small_set_of_subscriptions_is_listed_every_tick():
    assert listing_due(1_000, NOW - timedelta(minutes=5), NOW)


def test_a_large_set_is_listed_once_an_hour_within_graphs_list_budget():
    assert not listing_due(10_000, NOW - LIST_EVERY + timedelta(seconds=1), NOW)
    assert listing_due(10_000, NOW - LIST_EVERY, NOW)
    assert listing_due(10_000, None, NOW)
    # 100 pages an hour is far inside Graph's ~40 list requests per 20 s.
    assert 10_000 / LIST_PAGE_SIZE / (LIST_EVERY / timedelta(seconds=20)) < 40


def test_a_stray_subscription_on_a_desired_resource_is_deleted_and_the_resource_created(make_remote):
    # Graph gives a duplicate its own id (no 409): the stray would notify twice, so it goes.
    stray = make_remote(id="44444444-0000-0000-0000-000000000001")

    result = plan([WANT], [], [stray], NOW, OUR_URL)

    assert result.create == [WANT]
    assert result.delete_remote == [stray.id]


def test_a_stray_left_by_a_dead_creating_run_is_deleted_before_creating_again(make_record, make_remote):
    record = make_record(status=CREATING, subscription_id="", expires_at=None, updated_at=NOW - timedelta(hours=1))
    stray = make_remote(id="55555555-0000-0000-0000-000000000001")

    result = plan([WANT], [record], [stray], NOW, OUR_URL)

    assert result.create == [WANT]
    assert result.delete_remote == [stray.id]


def test_a_duplicate_of_a_recorded_subscription_is_deleted_and_the_recorded_one_kept(make_record, make_remote):
    record = make_record()
    duplicate = make_remote(id="66666666-0000-0000-0000-000000000001")

    result = plan([WANT], [record], [make_remote(), duplicate], NOW, OUR_URL)

    assert result.delete_remote == [duplicate.id]
    assert (result.create, result.renew, result.recreate, result.delete) == ([], [], [], [])


def test_a_stray_listed_with_a_leading_slash_is_still_recognised(make_remote):
    stray = make_remote(id="77777777-0000-0000-0000-000000000001", resource=f"/{DRIVE}")

    assert plan([WANT], [], [stray], NOW, OUR_URL).delete_remote == [stray.id]


def test_several_subscriptions_are_planned_independently(make_record, make_remote):
    fresh = make_record()
    due_want = DesiredSubscription(OTHER_DRIVE, "updated")
    due = make_record(
        resource=OTHER_DRIVE, subscription_id="88888888-0000-0000-0000-000000000001", expires_at=NOW + timedelta(days=1)
    )
    new_want = DesiredSubscription("sites/contoso.sharepoint.com,1,2/lists/3c4d5e6f", "updated")
    unwanted = make_record(resource="drives/b!dW53YW50ZWQ/root", subscription_id="99999999-0000-0000-0000-000000000001")
    remote = [
        make_remote(),
        make_remote(id=due.subscription_id, resource=OTHER_DRIVE),
        make_remote(id=unwanted.subscription_id, resource=unwanted.resource),
    ]

    result = plan([WANT, due_want, new_want], [fresh, due, unwanted], remote, NOW, OUR_URL)

    assert result.create == [new_want]
    assert result.renew == [due]
    assert result.delete == [unwanted]
    assert (result.recreate, result.delete_remote) == ([], [])


# --- duplicates and crashes: what Graph made for an attempt the record does not name yet ----------------


def test_the_subscription_graph_made_for_a_crashed_attempt_is_adopted_not_deleted(make_record, make_remote):
    record = make_record(status=CREATING, subscription_id="", expires_at=None, updated_at=NOW - timedelta(hours=1))
    made = make_remote(id="55555555-0000-0000-0000-000000000002")
    other = make_remote(id="55555555-0000-0000-0000-000000000003")

    result = plan([WANT], [record], [made, other], NOW, OUR_URL, pending={record.key: made.id})

    assert result.create == [WANT]  # the creation finds the pending row and adopts ``made``
    assert result.delete_remote == [other.id]


def test_pending_rows_are_sorted_into_finished_ones_and_creations_to_adopt(make_record):
    creating = make_record(status=CREATING, subscription_id="", updated_at=NOW - timedelta(hours=1))
    active = make_record(resource=OTHER_DRIVE)
    rows = {
        "answered": PendingCreation(creating.key, "cs", NOW - timedelta(minutes=1), subscription_id="sub-new"),
        "done": PendingCreation(active.key, "cs", NOW, subscription_id=active.subscription_id),
        "orphan": PendingCreation("drives:gone:root|updated", "cs", NOW, subscription_id="sub-x"),
    }

    finished, adopting = sort_pending(rows.values(), [creating, active], NOW)

    assert finished == [rows["done"], rows["orphan"]]
    assert adopting == {creating.key: "sub-new"}
    in_flight = PendingCreation(creating.key, "cs", NOW - timedelta(seconds=10))
    dead = replace(in_flight, started_at=NOW - PENDING_GRACE)
    assert sort_pending([in_flight], [creating], NOW) == ([], {})  # a POST still under way
    assert sort_pending([dead], [creating], NOW) == ([dead], {})


def test_a_subscription_whose_query_changed_is_recreated_with_the_new_query(make_record, make_remote):
    chats = DesiredSubscription("chats/getAllMessages", "created", True, query="model=B")
    record = make_record(resource="chats/getAllMessages", change_type="created", subscription_id="sub-1")
    listed = make_remote(id="sub-1", resource="chats/getAllMessages", change_type="created")

    result = plan([chats], [record], [listed], NOW, OUR_URL)

    assert result.recreate == [replace(record, query="model=B")]
    assert result.delete_remote == []


def test_a_listed_subscription_with_a_query_belongs_to_its_entry(make_record, make_remote):
    chats = DesiredSubscription("chats/getAllMessages", "created", True, query="model=B")
    record = make_record(resource="chats/getAllMessages", change_type="created", subscription_id="s1", query="model=B")
    listed = make_remote(id="s1", resource="/chats/getAllMessages?model=B", change_type="created")

    assert plan([chats], [record], [listed], NOW, OUR_URL) == Plan()


def test_a_rich_subscription_on_another_certificate_is_renewed_which_moves_it(make_record, make_remote):
    rich = DesiredSubscription(DRIVE, "updated", include_resource_data=True)
    moved = make_record(certificate_id="cert-2", certificate_thumbprint="BB")
    stranded = replace(moved, certificate_id="cert-1", certificate_thumbprint="AA")

    assert plan([rich], [moved], [make_remote()], NOW, OUR_URL, certificate=("cert-2", "BB")) == Plan()
    assert plan([rich], [stranded], [make_remote()], NOW, OUR_URL, certificate=("cert-2", "BB")).renew == [stranded]
    # Same id, another certificate (a rotation that kept NOTIFICATION_CERTIFICATE_ID) moves it too.
    same_id = replace(moved, certificate_thumbprint="AA")
    assert plan([rich], [same_id], [make_remote()], NOW, OUR_URL, certificate=("cert-2", "BB")).renew == [same_id]
    assert plan([WANT], [stranded], [make_remote()], NOW, OUR_URL, certificate=("cert-2", "BB")) == Plan()
