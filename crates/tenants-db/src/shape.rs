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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::driver::sealed::Backend;

/// The channel on which migrations are announced, on the shared database (the
/// default server's). The payload names what was migrated:
///
/// - empty: the shared database's own tables (the pool tables): the shared pools
///   retire every connection opened before it;
/// - `schema:<schema>`: a bridge tenant's schema: each pooled connection forgets the
///   statements it cached for bridge tenants (deadpool; sqlx caches none there);
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
/// each announcement's payload, [`Heard::Reconnected`] once listening again after
/// a loss, and [`Heard::Quiet`] every few seconds without either.
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
        if std::mem::take(&mut lost) && !heard(Heard::Reconnected) {
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
    }
}

/// What the migration listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard<'a> {
    /// A migration ran on the database named (empty: the shared database).
    Migrated(&'a str),
    /// The listening connection was lost and opened again: announcements in
    /// between were missed.
    Reconnected,
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
