//! Keeping the drivers' prepared statements in step with migrations.
//!
//! Both drivers cache prepared statements per connection, by SQL text. When a
//! migration changes what a statement returns (`SELECT *` over a table that gained a
//! column), PostgreSQL refuses to run the cached statement again ("cached plan must
//! not change result type", SQLSTATE 0A000) on every later use, until its connection
//! closes. So the provisioning engine announces each migration on
//! [`MIGRATED_CHANNEL`] of the shared database, and the router, which listens there
//! with a connection of its own, retires every connection opened before the
//! migration at its next hand-out (shared pools), or closes the migrated silo
//! database's pool. New connections prepare their statements against the new shapes.
//!
//! Bridge tenants share prepared statements between schemas of one shape, known
//! by a fingerprint of each schema's catalog entries ([`schema_shape_sql`],
//! [`SchemaShapes`]), read again when a migration of the schema is announced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tenants_core::SqlIdent;

use crate::driver::sealed::Backend;
use crate::isolation::{DISCARD_STATE, RESET_SETTINGS};

/// The channel on which migrations are announced, on the shared database (the
/// default server's). The payload names what was migrated:
///
/// - empty: the shared database's own tables (the pool tables): the shared pools
///   retire every connection opened before it;
/// - `schema:<schema>`: a bridge tenant's schema: its shape (tables, columns,
///   types) is read again at its next hand-out, so it shares prepared statements
///   only with schemas of its new shape;
/// - `database:<database>`: a silo database: its pools close.
///
/// The provisioning engine sends it after every migration run, whether the run
/// succeeded or not (some migrations may have been applied); a migration run by
/// other means announces itself the same way:
/// `SELECT pg_notify('tenants_migrated', '')`.
pub const MIGRATED_CHANNEL: &str = "tenants_migrated";

/// What a migration announcement names: the one format the provisioning engine
/// writes and the router reads ([`MIGRATED_CHANNEL`]).
///
/// ```
/// use tenants_db::Migrated;
///
/// assert_eq!(Migrated::Schema("acme").payload(), "schema:acme");
/// assert_eq!(Migrated::parse("database:big_shop"), Migrated::Database("big_shop"));
/// assert_eq!(Migrated::parse("something new"), Migrated::Shared);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated<'a> {
    /// The shared database's own tables (payload empty).
    Shared,
    /// A bridge tenant's schema (`schema:<name>`).
    Schema(&'a str),
    /// A silo database (`database:<name>`).
    Database(&'a str),
}

impl<'a> Migrated<'a> {
    /// The announcement's payload.
    pub fn payload(self) -> String {
        match self {
            Migrated::Shared => String::new(),
            Migrated::Schema(schema) => format!("schema:{schema}"),
            Migrated::Database(database) => format!("database:{database}"),
        }
    }

    /// Reads a payload; one this version does not know reads as [`Migrated::Shared`],
    /// which retires the most.
    pub fn parse(payload: &'a str) -> Self {
        if let Some(schema) = payload.strip_prefix("schema:") {
            Migrated::Schema(schema)
        } else if let Some(database) = payload.strip_prefix("database:") {
            Migrated::Database(database)
        } else {
            Migrated::Shared
        }
    }
}

/// How long a migration listener waits before connecting again.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// How often a quiet migration listener reports [`Heard::Quiet`], so it can stop
/// once its router is gone.
const LISTEN_QUIET: Duration = Duration::from_secs(5);

/// Listens on [`MIGRATED_CHANNEL`] of `server`'s database (on a connection of its
/// own, connecting again after a loss) until `heard` returns `false`: `heard` gets
/// [`Heard::Reconnected`] when listening starts again after a loss, then
/// [`Heard::Listening`] each time it starts, each announcement's payload,
/// [`Heard::Lost`] when the connection ends, and [`Heard::Quiet`] every few
/// seconds without any of these.
pub(crate) async fn listen<D: Backend>(
    server: D::Server,
    mut heard: impl FnMut(Heard<'_>) -> bool,
) {
    let mut lost = false;
    loop {
        let Some(mut payloads) = D::subscribe(&server, MIGRATED_CHANNEL).await else {
            tokio::time::sleep(LISTEN_RETRY).await;
            if !heard(Heard::Quiet) {
                return;
            }
            continue;
        };
        // What a loss may have made stale goes first, then sharing starts.
        if std::mem::take(&mut lost) && !heard(Heard::Reconnected) {
            return;
        }
        if !heard(Heard::Listening) {
            return;
        }
        loop {
            let keep = match tokio::time::timeout(LISTEN_QUIET, payloads.recv()).await {
                Err(_) => heard(Heard::Quiet),
                Ok(Some(payload)) => heard(Heard::Migrated(&payload)),
                // The connection ended: announcements may be missed until the next.
                Ok(None) => break,
            };
            if !keep {
                return;
            }
        }
        lost = true;
        if !heard(Heard::Lost) {
            return;
        }
    }
}

/// What the migration listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard<'a> {
    /// A migration ran on the database named (empty: the shared database).
    Migrated(&'a str),
    /// Listening (again): announcements from now on are heard.
    Listening,
    /// The listening connection was lost and opened again: announcements in
    /// between were missed.
    Reconnected,
    /// The listening connection was lost: announcements are missed until
    /// [`Heard::Listening`].
    Lost,
    /// Nothing for a while (a chance to stop listening when the router is gone).
    Quiet,
}

/// When the shared database's shapes last changed, as far as the router heard.
#[derive(Debug)]
pub(crate) struct Shapes {
    base: Instant,
    /// Nanoseconds after `base` of the last change, plus one; 0 for never.
    changed: AtomicU64,
    /// Announcements heard, for tests and stats.
    heard: AtomicU64,
}

impl Default for Shapes {
    fn default() -> Self {
        Shapes {
            base: Instant::now(),
            changed: AtomicU64::new(0),
            heard: AtomicU64::new(0),
        }
    }
}

impl Shapes {
    /// Records a change now: connections opened before it are retired.
    pub(crate) fn changed(&self) {
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.changed.fetch_max(now + 1, Ordering::Relaxed);
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an announcement that concerned no shared pool (a silo database).
    pub(crate) fn heard_other(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// Announcements heard so far.
    pub(crate) fn heard(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    /// Whether a connection opened at `created` (`None`: before the router existed)
    /// predates the last change, so its cached statements may be stale.
    pub(crate) fn predates_change(&self, created: Option<Instant>) -> bool {
        let changed = self.changed.load(Ordering::Relaxed);
        if changed == 0 {
            return false;
        }
        let Some(created) = created.and_then(|c| c.checked_duration_since(self.base)) else {
            return true;
        };
        u64::try_from(created.as_nanos()).unwrap_or(u64::MAX) < changed - 1
    }
}

/// What a bridge schema's objects look like to a prepared statement, as one
/// fingerprint (SHA-256, hex): its relations' columns (name, type, modifier,
/// collation), its own types, and its functions' signatures (arguments, results),
/// read from the catalogs in one simple query. Two
/// schemas with the same fingerprint give every statement the same parameter and
/// result types, so a statement prepared for one runs for the other: PostgreSQL
/// parses it again when `search_path` changed since its last use ("if the value of
/// `search_path` changes from one use to the next, the statement will be re-parsed
/// using the new `search_path`", PostgreSQL documentation of `PREPARE`), and refuses
/// it rather than return another shape ("cached plan must not change result type").
///
/// A schema's own types count by type id, which no other schema shares: a schema
/// with an enum of its own shares with none. Tables' row types do not count (every
/// table has its own); a statement returning a whole row (`SELECT t FROM items t`)
/// is refused in the next schema rather than read wrongly. A schema that does not
/// exist has the empty schema's fingerprint.
///
/// It runs on a pooled connection: in the same message, the session is first put
/// back as it connected and `search_path` set to `pg_catalog` alone, so that
/// nothing a handler left (a temporary `pg_class`, a function or operator of a
/// schema put before `pg_catalog`) answers in place of the catalogs.
pub(crate) fn schema_shape_sql(schema: &SqlIdent) -> String {
    // `SqlIdent` holds only a-z, 0-9 and '_': safe inside a literal.
    let schema = schema.as_str();
    format!(
        "{RESET_SETTINGS}{DISCARD_STATE}SET search_path = pg_catalog; \
         WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = '{schema}') \
         SELECT encode(sha256(convert_to( \
                  coalesce(string_agg(item, E'\\n' ORDER BY item), ''), 'UTF8')), 'hex') \
         FROM ( \
           SELECT format('relation %I (%s)', c.relname, string_agg( \
                    format('%I %s %s %s', a.attname, a.atttypid, a.atttypmod, a.attcollation), \
                    ', ' ORDER BY a.attnum)) AS item \
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
           WHERE c.relnamespace = (SELECT oid FROM s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
             AND a.attnum > 0 AND NOT a.attisdropped \
           GROUP BY c.relname \
           UNION ALL \
           SELECT format('type %I %s', t.typname, t.oid) FROM pg_type t \
           WHERE t.typnamespace = (SELECT oid FROM s) AND NOT EXISTS ( \
             SELECT FROM pg_class r WHERE r.relkind <> 'c' AND (r.oid = t.typrelid \
               OR r.oid = (SELECT e.typrelid FROM pg_type e WHERE e.oid = t.typelem))) \
           UNION ALL \
           SELECT format('function %I(%s) %s %s %s %s', p.proname, p.proargtypes, \
                         p.prorettype, p.proretset, p.proallargtypes, p.proargmodes) \
           FROM pg_proc p \
           WHERE p.pronamespace = (SELECT oid FROM s)) shape"
    )
}

/// The router's bridge schemas by fingerprint ([`schema_shape_sql`]): which schemas
/// may share prepared statements, and which shape most schemas have.
///
/// A schema's fingerprint holds until a migration announcement names the schema
/// ([`Migrated::Schema`]), or every one's until an announcement names the shared
/// database or the listener starts or stops listening (an announcement may have
/// been missed); either way it is read again at the schema's next hand-out.
/// Schemas share statements only while the router listens: behind a transaction
/// pooler it never does, and there each schema keeps statements of its own.
#[derive(Debug)]
pub(crate) struct SchemaShapes {
    /// Sharing is on for the router ([`RouterBuilder::bridge_statement_sharing`](crate::RouterBuilder::bridge_statement_sharing)).
    enabled: bool,
    /// The router is listening for announcements now.
    listening: AtomicBool,
    /// Bumped by each announcement; a reading belongs to the generation it
    /// started in.
    generation: AtomicU64,
    known: RwLock<Known>,
}

#[derive(Debug, Default)]
struct Known {
    schemas: HashMap<SqlIdent, Reading>,
    /// Readings older than this generation are stale (the last reconnection).
    floor: u64,
    /// How many known schemas have each fingerprint.
    tally: HashMap<Arc<str>, usize>,
    /// The fingerprint most known schemas have.
    common: Option<Arc<str>>,
}

/// A schema's fingerprint (`None`: announced migrated since) and the generation
/// it was read in (or announced in: readings that started before do not count).
#[derive(Debug)]
struct Reading {
    generation: u64,
    shape: Option<Arc<str>>,
}

impl SchemaShapes {
    /// The shapes of a router that shares statements between schemas (`enabled`)
    /// or not.
    pub(crate) fn new(enabled: bool) -> Self {
        SchemaShapes {
            enabled,
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            known: RwLock::new(Known::default()),
        }
    }
}

impl SchemaShapes {
    /// Whether schemas of one fingerprint share statements: while the router is
    /// listening for announcements.
    pub(crate) fn share(&self) -> bool {
        self.enabled && self.listening.load(Ordering::Acquire)
    }

    /// Whether the router is listening for announcements now.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// The router started (`true`) or stopped listening: every reading so far
    /// may have missed an announcement.
    pub(crate) fn listening(&self, listening: bool) {
        let _ = self.migrated(None);
        self.listening.store(listening, Ordering::Release);
    }

    /// The generation a reading that starts now belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `schema`'s fingerprint, unless it is unknown or stale.
    pub(crate) fn get(&self, schema: &SqlIdent) -> Option<Arc<str>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let reading = known.schemas.get(schema)?;
        if reading.generation < known.floor {
            return None;
        }
        reading.shape.clone()
    }

    /// Records `schema`'s fingerprint, read in `generation`, and makes it the
    /// common one if more schemas have it now; returns `false`, keeping nothing,
    /// when an announcement came since (the reading may be stale).
    pub(crate) fn insert(&self, schema: &SqlIdent, generation: u64, shape: Arc<str>) -> bool {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let announced = known.schemas.get(schema).map_or(0, |r| r.generation);
        if generation < known.floor.max(announced) {
            return false;
        }
        known.set(schema, generation, Some(shape.clone()));
        let count = known.tally.get(&shape).copied().unwrap_or(0);
        let leader = known
            .common
            .as_ref()
            .map_or(0, |common| known.tally.get(common).copied().unwrap_or(0));
        if count > leader {
            known.common = Some(shape);
        }
        true
    }

    /// The fingerprint most known schemas have.
    pub(crate) fn common(&self) -> Option<Arc<str>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.common.clone()
    }

    /// `schema` was migrated (`None`: any may have been): its fingerprint is read
    /// again, and a reading under way is not kept. Returns the schema's fingerprint
    /// before, if it was known: connections may hold statements it shares.
    pub(crate) fn migrated(&self, schema: Option<&SqlIdent>) -> Option<Arc<str>> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        match schema {
            Some(schema) => known.set(schema, generation, None),
            None => {
                known.floor = generation;
                None
            }
        }
    }
}

impl Known {
    /// Records a reading; returns the one before.
    fn set(
        &mut self,
        schema: &SqlIdent,
        generation: u64,
        shape: Option<Arc<str>>,
    ) -> Option<Arc<str>> {
        if let Some(shape) = &shape {
            *self.tally.entry(shape.clone()).or_default() += 1;
        }
        let old = self
            .schemas
            .insert(schema.clone(), Reading { generation, shape });
        let old = old.and_then(|r| r.shape);
        if let Some(old) = &old
            && let Some(count) = self.tally.get_mut(old)
        {
            *count -= 1;
            if *count == 0 {
                self.tally.remove(old);
            }
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn announcements_round_trip() {
        for migrated in [
            Migrated::Shared,
            Migrated::Schema("acme"),
            Migrated::Database("acme_db"),
        ] {
            assert_eq!(Migrated::parse(&migrated.payload()), migrated);
        }
        assert_eq!(Migrated::parse("something:else"), Migrated::Shared);
    }

    fn schema(name: &str) -> SqlIdent {
        SqlIdent::new(name).unwrap()
    }

    #[test]
    fn the_common_shape_is_the_one_most_schemas_have() {
        let shapes = SchemaShapes::new(true);
        let (one, two): (Arc<str>, Arc<str>) = ("one".into(), "two".into());
        let g = shapes.generation();
        // The first shape read becomes the common one.
        assert!(shapes.insert(&schema("a"), g, one.clone()));
        assert!(shapes.insert(&schema("b"), g, two.clone()));
        assert_eq!(shapes.common(), Some(one.clone()));
        // A tie keeps the common shape; a lead changes it.
        assert!(shapes.insert(&schema("c"), g, two.clone()));
        assert_eq!(shapes.common(), Some(two.clone()));
        // `a` migrated to `two`: read again, it counts once, not twice.
        assert_eq!(shapes.migrated(Some(&schema("a"))), Some(one.clone()));
        assert_eq!(shapes.migrated(Some(&schema("new"))), None);
        assert_eq!(shapes.get(&schema("a")), None);
        assert_eq!(shapes.get(&schema("b")), Some(two.clone()));
        let now = shapes.generation();
        assert!(shapes.insert(&schema("a"), now, two.clone()));
        let known = shapes.known.read().unwrap();
        assert_eq!(known.tally.get(&one), None);
        assert_eq!(known.tally[&two], 3);
    }

    #[test]
    fn a_reading_older_than_its_announcement_is_not_kept() {
        let shapes = SchemaShapes::new(true);
        let before = shapes.generation();
        let _ = shapes.migrated(Some(&schema("a")));
        assert!(!shapes.insert(&schema("a"), before, "stale".into()));
        assert_eq!(shapes.get(&schema("a")), None);
        // Another schema's reading of that generation stands.
        assert!(shapes.insert(&schema("b"), before, "fresh".into()));
        assert_eq!(shapes.get(&schema("b")).as_deref(), Some("fresh"));
        // Listening (again) makes every reading stale, and turns sharing on.
        assert!(!shapes.share());
        shapes.listening(true);
        assert!(shapes.share());
        assert_eq!(shapes.get(&schema("b")), None);
        assert!(!shapes.insert(&schema("b"), before, "stale".into()));
        assert!(shapes.insert(&schema("b"), shapes.generation(), "fresh".into()));
        assert_eq!(shapes.get(&schema("b")).as_deref(), Some("fresh"));
    }

    #[test]
    fn connections_opened_before_a_change_are_stale() {
        let shapes = Shapes::default();
        let before = Instant::now();
        assert!(!shapes.predates_change(Some(before)));
        std::thread::sleep(Duration::from_millis(2));
        shapes.changed();
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(shapes.predates_change(Some(before)));
        assert!(shapes.predates_change(None));
        assert!(!shapes.predates_change(Some(after)));
        assert_eq!(shapes.heard(), 1);
    }
}
