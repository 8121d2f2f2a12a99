//! A slot's place is the database's to guarantee: a slot refers to an existing place of its
//! own source whatever writes it, and places do not vanish under their slots. SQLite checks
//! this with per-row foreign keys; PostgreSQL with statement-level triggers (one check per
//! statement: migration `2026-12-01-000003_slots_place_check`), which these tests hold to
//! what the foreign key did, including its locking.

mod common;

use common::{Place, Row, TestApp, csv_feed, spawn_app};
use diesel::prelude::*;
use sasnp::store::DbConn;

/// An app with two sources, each with two places and a slot at each.
async fn two_sources() -> (TestApp, i64, i64) {
    let app = spawn_app().await;
    let cpts = app.nantes_cpts();
    let mut sources = Vec::new();
    for (name, first, second) in [
        ("a", Place::NantesCentre, Place::SaintHerblain),
        ("b", Place::Reze, Place::SuceSurErdre),
    ] {
        let source = app.csv_source(&app.admin_token, &cpts).await;
        let (id1, id2) = (format!("{name}-1"), format!("{name}-2"));
        let rows = [
            Row::new(&id1, "2026-11-23 11:00", first),
            Row::new(&id2, "2026-11-23 12:00", second),
        ];
        let (status, report) = app
            .push_csv(&app.admin_token, source, csv_feed(&rows))
            .await;
        assert_eq!(status, 200, "{report}");
        sources.push(source);
    }
    (app, sources[0], sources[1])
}

fn conn(app: &TestApp) -> DbConn {
    app.state.db.conn().unwrap()
}

fn execute(c: &mut DbConn, sql: &str) -> QueryResult<usize> {
    sasnp::db_run!(c, |c| diesel::sql_query(sql).execute(c))
}

fn count(c: &mut DbConn, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    sasnp::db_run!(c, |c| diesel::sql_query(sql).get_result::<N>(c))
        .unwrap()
        .n
}

/// The first place of `source` (the other: [`other_place_of`]).
fn place_of(c: &mut DbConn, source: i64) -> i64 {
    count(
        c,
        &format!("SELECT MIN(id) AS n FROM places WHERE source_id = {source}"),
    )
}

fn other_place_of(c: &mut DbConn, source: i64) -> i64 {
    count(
        c,
        &format!("SELECT MAX(id) AS n FROM places WHERE source_id = {source}"),
    )
}

/// A copy of one of `source`'s slots under a new external id, pointing at `place`.
fn copy_slot_sql(source: i64, place: i64, external_id: &str) -> String {
    format!(
        "INSERT INTO slots (source_id, external_id, place_id, cpts_id, start_at, end_at, \
         feed_status, modality, audience, surnumeraire, capacity, snapshot_seq) \
         SELECT source_id, '{external_id}', {place}, cpts_id, start_at, end_at, feed_status, \
         modality, audience, surnumeraire, capacity, snapshot_seq \
         FROM slots WHERE source_id = {source} ORDER BY id LIMIT 1"
    )
}

fn is_pg(app: &TestApp) -> bool {
    app.state.db.backend() == sasnp::store::Backend::Postgres
}

#[tokio::test]
async fn a_slot_must_refer_to_an_existing_place_of_its_own_source() {
    let (app, a, b) = two_sources().await;
    let mut c = conn(&app);
    let slots = "SELECT COUNT(*) AS n FROM slots";
    assert_eq!(count(&mut c, slots), 4);
    let (place_a, place_b) = (place_of(&mut c, a), place_of(&mut c, b));

    // a place that does not exist: refused on insert and on update, nothing written
    let err = execute(&mut c, &copy_slot_sql(a, 999_999, "ghost")).unwrap_err();
    assert!(
        err.to_string().contains("FOREIGN KEY") || err.to_string().contains("place"),
        "{err}"
    );
    let moved = format!("UPDATE slots SET place_id = 999999 WHERE source_id = {a}");
    assert!(execute(&mut c, &moved).is_err());
    assert_eq!(count(&mut c, slots), 4);
    let at_place_a = format!("SELECT COUNT(*) AS n FROM slots WHERE place_id = {place_a}");
    assert_eq!(count(&mut c, &at_place_a), 1);

    // its own source's places: accepted, written or moved there
    assert_eq!(
        execute(&mut c, &copy_slot_sql(a, place_a, "extra")).unwrap(),
        1
    );
    assert_eq!(count(&mut c, slots), 5);
    let other_a = other_place_of(&mut c, a);
    let moved = format!("UPDATE slots SET place_id = {place_a} WHERE place_id = {other_a}");
    assert_eq!(execute(&mut c, &moved).unwrap(), 1);
    assert_eq!(count(&mut c, &at_place_a), 3);
    // an update that leaves the place alone (what holds and bookings do)
    let held = format!("UPDATE slots SET held_until = 1 WHERE source_id = {a}");
    assert_eq!(execute(&mut c, &held).unwrap(), 3);

    // another source's place: refused on PostgreSQL, where the key is (source, place)
    // (SQLite's two keys check the place and the source apart)
    if is_pg(&app) {
        let err = execute(&mut c, &copy_slot_sql(a, place_b, "crossed")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let crossed = format!("UPDATE slots SET place_id = {place_b} WHERE source_id = {a}");
        assert!(execute(&mut c, &crossed).is_err());
        assert_eq!(count(&mut c, slots), 5);
        // a statement with one bad row among good ones writes none of them
        let mixed = format!(
            "INSERT INTO slots (source_id, external_id, place_id, cpts_id, start_at, end_at, \
             feed_status, modality, audience, surnumeraire, capacity, snapshot_seq) \
             SELECT source_id, external_id || '-again', \
             CASE WHEN external_id = 'a-2' THEN {place_b} ELSE place_id END, cpts_id, start_at, \
             end_at, feed_status, modality, audience, surnumeraire, capacity, snapshot_seq \
             FROM slots WHERE source_id = {a}"
        );
        assert!(execute(&mut c, &mixed).is_err());
        assert_eq!(count(&mut c, slots), 5);
    }
}

#[tokio::test]
async fn deleting_places_deletes_their_slots_and_a_place_keeps_its_key() {
    let (app, a, b) = two_sources().await;
    let mut c = conn(&app);
    let place_a = place_of(&mut c, a);
    let slots_of = |c: &mut DbConn, s: i64| {
        count(
            c,
            &format!("SELECT COUNT(*) AS n FROM slots WHERE source_id = {s}"),
        )
    };
    let delete = format!("DELETE FROM places WHERE id = {place_a}");
    if !is_pg(&app) {
        // SQLite's key has no cascade: the place stays while it has slots
        assert!(execute(&mut c, &delete).is_err());
        assert_eq!(slots_of(&mut c, a), 2);
        return;
    }
    // a place's key cannot change, to another source or another id
    let to_b = format!("UPDATE places SET source_id = {b} WHERE id = {place_a}");
    assert!(execute(&mut c, &to_b).is_err());
    let renumbered = format!("UPDATE places SET id = id + 1000 WHERE id = {place_a}");
    assert!(execute(&mut c, &renumbered).is_err());
    // other columns may
    let renamed = format!("UPDATE places SET name = 'Renommé' WHERE id = {place_a}");
    assert_eq!(execute(&mut c, &renamed).unwrap(), 1);
    // places cannot be emptied under their slots
    assert!(execute(&mut c, "TRUNCATE places").is_err());

    // the place's slot goes with it, the source's other place keeps its own
    assert_eq!(execute(&mut c, &delete).unwrap(), 1);
    assert_eq!(slots_of(&mut c, a), 1);
    assert_eq!(slots_of(&mut c, b), 2);
}

/// The foreign key's check locked the place (`FOR KEY SHARE`) until the writing transaction
/// ended, so that a concurrent delete waited and then took the new slot with it; the
/// statement-level check must do the same.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_place_being_referred_to_cannot_be_deleted_until_the_writer_ends() {
    let (app, a, _) = two_sources().await;
    if !is_pg(&app) {
        return; // SQLite has one writer at a time: no concurrent delete to order
    }
    let mut writer = diesel::PgConnection::establish(&app.db_url).unwrap();
    let mut deleter = diesel::PgConnection::establish(&app.db_url).unwrap();
    use diesel::connection::SimpleConnection;
    let place_a = place_of(&mut conn(&app), a);
    writer.batch_execute("BEGIN").unwrap();
    writer
        .batch_execute(&copy_slot_sql(a, place_a, "pending"))
        .unwrap();
    // the writer has not committed: the delete waits for it (here, until its lock timeout)
    deleter.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let delete = format!("DELETE FROM places WHERE id = {place_a}");
    let err = deleter.batch_execute(&delete).unwrap_err();
    assert!(err.to_string().contains("lock timeout"), "{err}");
    writer.batch_execute("COMMIT").unwrap();
    // once it has, the delete goes through and takes every slot of the place, the new one too
    deleter.batch_execute(&delete).unwrap();
    let left = count(
        &mut conn(&app),
        &format!("SELECT COUNT(*) AS n FROM slots WHERE place_id = {place_a}"),
    );
    assert_eq!(left, 0);

    // and the other way round: a slot written for a place being deleted is refused once the
    // delete commits
    let (app, a, _) = two_sources().await;
    let mut writer = diesel::PgConnection::establish(&app.db_url).unwrap();
    let mut deleter = diesel::PgConnection::establish(&app.db_url).unwrap();
    let place_a = place_of(&mut conn(&app), a);
    deleter.batch_execute("BEGIN").unwrap();
    deleter
        .batch_execute(&format!("DELETE FROM places WHERE id = {place_a}"))
        .unwrap();
    writer.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let err = writer
        .batch_execute(&copy_slot_sql(a, place_a, "late"))
        .unwrap_err();
    assert!(err.to_string().contains("lock timeout"), "{err}");
    let handle = std::thread::spawn(move || {
        writer.batch_execute("SET lock_timeout = 0").unwrap();
        // waits for the delete, then finds the place gone; the source's slots were deleted
        // with it, so the copy selects no row on its own: give it one explicitly
        writer.batch_execute(&format!(
            "INSERT INTO slots (source_id, external_id, place_id, cpts_id, start_at, end_at, \
             feed_status, modality, audience, surnumeraire, capacity, snapshot_seq) \
             VALUES ({a}, 'late', {place_a}, 'x', 1, 2, 'free', 'AMB', 4, false, 1, 1)"
        ))
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    deleter.batch_execute("COMMIT").unwrap();
    let err = handle.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
