//! Two nodes on one database: what one commits (snapshots, freshness, holds, bookings,
//! releases, cancellations, expiries) reaches the other's searches through the index sync.
//! The sync loops are kept out of the way; the tests run node B's rounds themselves.

mod common;

use common::{Place, Row, TestApp, csv_feed, result_ids, spawn_app_with};
use sasnp::domain::Role;
use sasnp::index::sync::{SyncState, SyncSummary};
use serde_json::json;

const AT_NANTES: &str = "lat=47.2184&lon=-1.5536&limit=50";

/// Longer than any test: the background rounds never come.
const MANUAL_MS: u64 = 3_600_000;

/// Node A and node B on A's database, each with its sync state, and accounts.
struct Nodes {
    a: TestApp,
    b: TestApp,
    a_sync: SyncState,
    b_sync: SyncState,
    publisher: String,
    source: i64,
    op_a: String,
    op_b: String,
}

async fn nodes(push_stale_after_s: u64) -> Nodes {
    let a = spawn_app_with(|s| {
        s.sync_interval_ms = MANUAL_MS;
        s.push_stale_after_s = push_stale_after_s;
    })
    .await;
    let shared = a.db_url.clone();
    let b = spawn_app_with(move |s| {
        s.database_url = shared;
        s.sync_interval_ms = MANUAL_MS;
        s.push_stale_after_s = push_stale_after_s;
    })
    .await;
    let a_sync = sasnp::tasks::index_sync_state(&a.state).await.unwrap();
    let b_sync = sasnp::tasks::index_sync_state(&b.state).await.unwrap();
    let cpts = a.nantes_cpts();
    let publisher = a.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let source = a.csv_source(&publisher, &cpts).await;
    let op_a = a.token("osnp-a", Role::Operator, None).await;
    let op_b = a.token("osnp-b", Role::Operator, None).await;
    Nodes {
        a,
        b,
        a_sync,
        b_sync,
        publisher,
        source,
        op_a,
        op_b,
    }
}

fn two_slots() -> Vec<Row<'static>> {
    vec![
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 11:30", Place::NantesCentre),
    ]
}

impl Nodes {
    /// One sync round on node B.
    async fn sync_b(&mut self) -> SyncSummary {
        sasnp::tasks::sync_index_once(&self.b.state, &mut self.b_sync)
            .await
            .unwrap()
    }

    /// One sync round on node A (which did the writes itself).
    async fn sync_a(&mut self) -> SyncSummary {
        sasnp::tasks::sync_index_once(&self.a.state, &mut self.a_sync)
            .await
            .unwrap()
    }

    async fn push_on_a(&self, rows: &[Row<'_>]) {
        let (s, report) = self
            .a
            .push_csv(&self.publisher, self.source, csv_feed(rows))
            .await;
        assert_eq!(s, 200, "{report}");
    }

    async fn seen_on_a(&self) -> Vec<String> {
        result_ids(&self.a.search(&self.op_a, AT_NANTES).await.1)
    }

    async fn seen_on_b(&self) -> Vec<String> {
        result_ids(&self.b.search(&self.op_b, AT_NANTES).await.1)
    }

    /// Both nodes' clocks, moved together.
    fn advance(&self, by: chrono::Duration) {
        self.a.clock.advance(by);
        self.b.clock.advance(by);
    }

    /// Two slots pushed on A and synced to B; the id of slot "a".
    async fn with_two_slots(&mut self) -> i64 {
        self.push_on_a(&two_slots()).await;
        assert_eq!(self.sync_b().await.reloaded, 1);
        assert_eq!(self.seen_on_b().await, ["a", "b"]);
        self.b.slot_id_near_nantes(&self.op_b, "a").await
    }

    async fn hold_on(&self, node: &TestApp, op: &str, slot: i64) -> (u16, serde_json::Value) {
        node.post_json(op, &format!("/v1/slots/{slot}/hold"), json!({}))
            .await
    }
}

#[tokio::test]
async fn a_snapshot_pushed_to_one_node_reaches_the_other_at_its_next_sync() {
    let mut n = nodes(24 * 3600).await;
    n.push_on_a(&two_slots()).await;
    assert_eq!(n.seen_on_a().await, ["a", "b"]);
    assert!(n.seen_on_b().await.is_empty(), "B has not synced yet");
    let s = n.sync_b().await;
    assert_eq!((s.reloaded, s.failed), (1, 0), "{s:?}");
    assert_eq!(n.seen_on_b().await, ["a", "b"]);
    // A already shows its own snapshot: its sync reloads nothing
    assert_eq!(n.sync_a().await.reloaded, 0);

    // a second snapshot drops "b" and adds "c"
    n.push_on_a(&[
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("c", "2026-11-23 12:00", Place::Reze),
    ])
    .await;
    assert_eq!(n.seen_on_a().await, ["a", "c"]);
    assert_eq!(n.seen_on_b().await, ["a", "b"], "B has not synced yet");
    assert_eq!(n.sync_b().await.reloaded, 1);
    assert_eq!(n.seen_on_b().await, ["a", "c"]);
    assert_eq!(n.sync_a().await.reloaded, 0);
}

#[tokio::test]
async fn holds_bookings_releases_cancellations_and_expiries_on_one_node_reach_the_other() {
    let mut n = nodes(24 * 3600).await;
    let a = n.with_two_slots().await;

    // held on A → hidden on B after its sync
    let (s, h) = n.hold_on(&n.a, &n.op_a, a).await;
    assert_eq!(s, 201, "{h}");
    assert_eq!(n.seen_on_a().await, ["b"]);
    assert_eq!(n.seen_on_b().await, ["a", "b"], "B has not synced yet");
    let s = n.sync_b().await;
    assert_eq!((s.events, s.slots, s.reloaded), (1, 1, 0), "{s:?}");
    assert_eq!(n.seen_on_b().await, ["b"]);

    // released on A → shown again on B
    let hold_id = h["hold_id"].as_str().unwrap().to_string();
    let res =
        n.a.client
            .delete(n.a.url(&format!("/v1/holds/{hold_id}")))
            .bearer_auth(&n.op_a)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 204);
    n.sync_b().await;
    assert_eq!(n.seen_on_b().await, ["a", "b"]);

    // held and confirmed on A → hidden on B
    let (_, h) = n.hold_on(&n.a, &n.op_a, a).await;
    let (s, appt) =
        n.a.post_json(
            &n.op_a,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 201, "{appt}");
    let s = n.sync_b().await;
    assert_eq!((s.events, s.slots), (2, 1), "{s:?}");
    assert_eq!(n.seen_on_b().await, ["b"]);
    assert!(n.b.state.index.is_taken(a, i64::MAX - 1), "booked for good");

    // the appointment cancelled on A → shown again on B
    let res =
        n.a.client
            .patch(n.a.url(&format!(
                "/v1/appointments/{}",
                appt["appointment_id"].as_i64().unwrap()
            )))
            .bearer_auth(&n.op_a)
            .json(&json!({"status": "cancelled"}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(n.seen_on_b().await, ["b"], "B has not synced yet");
    n.sync_b().await;
    assert_eq!(n.seen_on_b().await, ["a", "b"]);

    // held on A, then expired by A's sweeper once both clocks passed the TTL
    let (s, _) = n.hold_on(&n.a, &n.op_a, a).await;
    assert_eq!(s, 201);
    n.sync_b().await;
    assert_eq!(n.seen_on_b().await, ["b"]);
    n.advance(chrono::Duration::seconds(301));
    let expired = sasnp::tasks::expire_holds_once(&n.a.state).await.unwrap();
    assert_eq!(expired.len(), 1);
    let s = n.sync_b().await;
    assert_eq!((s.events, s.slots), (1, 1), "{s:?}");
    assert_eq!(n.seen_on_b().await, ["a", "b"]);
    // not only lapsed by the clock: the overlay entry left with the sync
    assert!(!n.b.state.index.is_taken(a, 0));
    // B can hold it now
    assert_eq!(n.hold_on(&n.b, &n.op_b, a).await.0, 201);
}

#[tokio::test]
async fn a_slot_held_on_one_node_cannot_be_held_on_the_other_synced_or_not() {
    let mut n = nodes(24 * 3600).await;
    let a = n.with_two_slots().await;
    assert_eq!(n.hold_on(&n.a, &n.op_a, a).await.0, 201);
    // B still shows it, but the database decides
    assert_eq!(n.seen_on_b().await, ["a", "b"]);
    let (s, body) = n.hold_on(&n.b, &n.op_b, a).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "slot_unavailable");
    n.sync_b().await;
    assert_eq!(n.hold_on(&n.b, &n.op_b, a).await.0, 409);
    assert_eq!(n.seen_on_b().await, ["b"]);
}

#[tokio::test]
async fn a_sync_with_nothing_new_changes_nothing() {
    let mut n = nodes(24 * 3600).await;
    let a = n.with_two_slots().await;
    assert_eq!(n.hold_on(&n.b, &n.op_b, a).await.0, 201);
    // B's own hold, read back by its own sync: the same state
    let s = n.sync_b().await;
    assert_eq!((s.reloaded, s.events), (0, 1), "{s:?}");
    let before = n.b.search(&n.op_b, AT_NANTES).await.1;
    assert_eq!(result_ids(&before), ["b"]);
    for _ in 0..3 {
        let s = n.sync_b().await;
        assert_eq!(s, SyncSummary::default(), "{s:?}");
        assert!(!s.changed());
    }
    assert_eq!(n.b.search(&n.op_b, AT_NANTES).await.1, before);
    assert_eq!(n.b_sync.open_gaps(), 0);
}

#[tokio::test]
async fn freshness_confirmed_by_one_node_reaches_the_other() {
    let mut n = nodes(600).await;
    n.with_two_slots().await;
    // stale everywhere after 10 minutes without news
    n.advance(chrono::Duration::seconds(700));
    assert!(n.seen_on_a().await.is_empty());
    assert!(n.seen_on_b().await.is_empty());
    // another node (or a 304 on a pulled source) confirms the data in the database
    let (source, now) = (n.source, n.a.clock_now());
    n.a.state
        .db
        .run(move |c| sasnp::store::sources::record_unchanged(c, source, now))
        .await
        .unwrap();
    let s = n.sync_b().await;
    assert_eq!((s.freshened, s.reloaded), (1, 0), "{s:?}");
    assert_eq!(n.seen_on_b().await, ["a", "b"]);
    assert_eq!(n.sync_b().await, SyncSummary::default());
}

/// PostgreSQL takes an audit id at insert, not at commit: a transaction that inserted its row
/// before another node's hold commits after it. B's sync reads the later row first, keeps the
/// missing id open, and applies it once it commits.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_audit_row_committed_after_a_later_one_is_still_applied() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let mut n = nodes(24 * 3600).await;
    if !n.a.db_url.starts_with("postgres") {
        return; // SQLite writers are serialised: ids always commit in order
    }
    let a = n.with_two_slots().await;
    let b = n.b.slot_id_near_nantes(&n.op_b, "b").await;
    let until = n.a.clock_now() + 300;
    let mut slow = diesel::PgConnection::establish(&n.a.db_url).unwrap();
    slow.batch_execute(&format!(
        "BEGIN; \
         INSERT INTO audit_events (at, action, slot_id) VALUES ({until}, 'hold', {b}); \
         UPDATE slots SET hold_id = 'slow-hold', held_until = {until} WHERE id = {b};"
    ))
    .unwrap();
    // a later id, committed first
    assert_eq!(n.hold_on(&n.a, &n.op_a, a).await.0, 201);
    let s = n.sync_b().await;
    assert_eq!(s.events, 1, "{s:?}");
    assert_eq!(n.b_sync.open_gaps(), 1);
    assert_eq!(n.seen_on_b().await, ["b"]);
    slow.batch_execute("COMMIT").unwrap();
    let s = n.sync_b().await;
    assert_eq!((s.events, s.slots), (1, 1), "{s:?}");
    assert_eq!(n.b_sync.open_gaps(), 0);
    assert!(n.seen_on_b().await.is_empty());
}

#[tokio::test]
async fn a_source_this_node_is_storing_is_left_to_its_own_install() {
    let mut n = nodes(24 * 3600).await;
    // Node B is (as far as its sync knows) storing a snapshot of the source when A's lands.
    let b_state = n.b.state.clone();
    let storing = b_state.index.storing(n.source);
    n.push_on_a(&two_slots()).await;
    assert_eq!(n.sync_b().await.reloaded, 0, "left to B's own install");
    assert!(n.seen_on_b().await.is_empty());
    drop(storing);
    // B's write failed or never came: the next round reads what the database holds.
    assert_eq!(n.sync_b().await.reloaded, 1);
    assert_eq!(n.seen_on_b().await, ["a", "b"]);
}
