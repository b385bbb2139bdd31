//! What the backend-neutral router needs from a database driver.
//!
//! Placement, caches, the silo budget and the isolation statements live in
//! [`router`](crate::router) and [`silo`](crate::silo); a driver only parses server
//! URLs and opens, measures and closes its own connection pools.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::shape::Shapes;
use crate::silo::Identity;
use crate::{Error, Hazard};

/// A database driver the [`TenantRouter`](crate::TenantRouter) can hand out
/// connections of: `Sqlx` (feature `sqlx`) or `Deadpool` (feature `deadpool`).
///
/// The trait is sealed: the router's guarantees depend on how each driver is adapted.
pub trait Driver: sealed::Backend {}

pub(crate) mod sealed {
    use super::*;

    /// How one connection pool of the router is sized and behaves.
    #[derive(Debug, Clone)]
    pub struct PoolSettings {
        /// Most connections the pool opens.
        pub(crate) max_connections: u32,
        /// How long a caller waits for a connection.
        pub(crate) acquire_timeout: Duration,
        /// How long a connection may sit unused before the pool closes it.
        pub(crate) idle_timeout: Duration,
        /// How long a connection serves before the pool closes it instead of
        /// handing it out (sqlx `max_lifetime`, deadpool `pre_recycle`).
        pub(crate) lifetime: Duration,
        /// Whether the driver may keep prepared statements by SQL text from one
        /// hand-out to the next. Off for sqlx's bridge pool of the schemas not of
        /// the common shape, where the same text means tables of another shape:
        /// sqlx empties its cache when a connection comes back.
        #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
        pub(crate) statement_cache: bool,
        /// Whether the driver checks an idle connection with a round trip of its
        /// own before handing it out (sqlx's ping). Off for the shared pools: the
        /// statement that opens every hand-out reaches the server first, fails on a
        /// dead connection, and the router then takes another
        /// ([`Backend::is_dead_connection`]).
        #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
        pub(crate) liveness_check: bool,
        /// For the shared pools: connections opened before the last migration of
        /// the shared database are closed instead of handed out (sqlx
        /// `before_acquire`, deadpool `pre_recycle`).
        pub(crate) shapes: Option<Arc<Shapes>>,
        /// When an opening last failed on the router's pools (sqlx checks its
        /// connections for a while after: see [`FailedOpenings`]).
        #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
        pub(crate) failed_openings: Arc<FailedOpenings>,
    }

    /// When the server last refused the statement that opens a hand-out, on any
    /// pool of one router.
    ///
    /// sqlx gives a connection back to its pool when its `begin` fails, without
    /// saying which connection it was: one whose opening failed on a handler's hoard
    /// of temporary tables (more than `DISCARD TEMP` can lock at once) waits in the
    /// pool, inside a failed transaction or with the hoard, where every later
    /// opening fails too. So for [`FailedOpenings::WINDOW`] after a failure (a
    /// refused role aside), each sqlx connection runs `DISCARD TEMP` when it comes
    /// back to its pool (`after_release`) and before it is handed out
    /// (`before_acquire`, for one that came back before the failure was recorded),
    /// and is closed if that fails.
    #[derive(Debug)]
    pub(crate) struct FailedOpenings {
        origin: std::time::Instant,
        /// Milliseconds from `origin` to the last failure, plus one; 0: none yet.
        last: std::sync::atomic::AtomicU64,
    }

    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    impl FailedOpenings {
        /// How long after a failure connections are checked.
        pub(crate) const WINDOW: Duration = Duration::from_secs(10);

        /// Notes a failure now.
        pub(crate) fn record(&self) {
            let now = self.origin.elapsed().as_millis() as u64 + 1;
            self.last.store(now, std::sync::atomic::Ordering::Relaxed);
        }

        /// Whether the last failure is less than [`WINDOW`](Self::WINDOW) old.
        pub(crate) fn recent(&self) -> bool {
            let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
            let now = self.origin.elapsed().as_millis() as u64 + 1;
            last != 0 && now.saturating_sub(last) < Self::WINDOW.as_millis() as u64
        }
    }

    impl Default for FailedOpenings {
        fn default() -> Self {
            FailedOpenings {
                origin: std::time::Instant::now(),
                last: std::sync::atomic::AtomicU64::new(0),
            }
        }
    }

    /// The driver operations the router uses; see [`Driver`].
    pub trait Backend: Send + Sync + Sized + 'static {
        /// A parsed server URL.
        type Server: Clone + Send + Sync + 'static;
        /// A connection pool.
        type Pool: Clone + Send + Sync + 'static;
        /// What the driver keeps per router.
        type State: Default + Send + Sync + 'static;

        /// Parses a server's connection URL.
        fn parse_server(url: &str) -> Result<Self::Server, Error>;

        /// Opens a pool to `server`'s own database, or to a silo tenant's, without
        /// connecting yet. A silo pool serves one tenant: on a direct server each of
        /// its connections starts its session with
        /// [`TENANT_SETTING`](crate::TENANT_SETTING) set to that tenant (a startup
        /// parameter, [`Identity::startup_setting`]), and every new connection runs
        /// [`IDENTITY_SQL`](crate::silo::IDENTITY_SQL) and passes the answer to
        /// [`Identity::check`] before its first hand-out; a connection that fails is
        /// closed.
        fn open_pool(
            server: &Self::Server,
            silo: Option<&Arc<Identity>>,
            settings: &PoolSettings,
        ) -> Result<Self::Pool, Error>;

        /// Whether `error` says the pool was closed (a silo pool the budget closed
        /// between lookup and use).
        fn is_closed(error: &Error) -> bool;

        /// Whether `error` says the connection handed out had died while idle (its
        /// backend terminated, its socket closed): nothing it was sent took effect,
        /// and another connection may be taken.
        fn is_dead_connection(error: &Error) -> bool {
            let _ = error;
            false
        }

        /// Whether `error` came from opening a connection (refused, unreachable,
        /// authentication, no such database, a failed check), not from a statement.
        fn is_connect_failure(error: &Error) -> bool;

        /// Whether `error` says no connection came in time (the pool's wait ran
        /// out): from a pool with no connection at all, the server is not answering.
        fn is_timeout(error: &Error) -> bool;

        /// Whether the pool holds no open connection (being opened ones excluded).
        fn is_empty(pool: &Self::Pool) -> bool;

        /// Whether session state survives from one statement to the next on one
        /// client connection of `pool`: two connections each set a marker, then the
        /// first reads its own back. A transaction-mode pooler hands the statements
        /// whichever server connection is free, and the marker is lost or foreign.
        fn keeps_sessions(pool: &Self::Pool) -> impl Future<Output = Result<bool, Error>> + Send;

        /// Connections open in the pool, idle, checked out or being opened.
        fn size(pool: &Self::Pool) -> usize;

        /// Connections checked out of the pool or being opened for a caller: a
        /// pool with none may be closed without disturbing anyone.
        fn in_use(pool: &Self::Pool) -> usize;

        /// Closes the pool and every connection in it, waiting for checked-out
        /// connections to come back.
        fn close(pool: &Self::Pool) -> impl Future<Output = ()> + Send;

        /// Closes the pool's connections unused for longer than `idle`, for drivers
        /// whose pools do not do it themselves.
        fn close_idle(pool: &Self::Pool, idle: Duration) {
            let _ = (pool, idle);
        }

        /// Opens a connection of its own to `server`'s database and `LISTEN`s on
        /// `channel`: the payloads arrive on the receiver, which ends when the
        /// connection does; dropping the receiver closes the connection. `None`
        /// when connecting or listening failed.
        fn subscribe(
            server: &Self::Server,
            channel: &'static str,
        ) -> impl Future<Output = Option<UnboundedReceiver<String>>> + Send;

        /// Whether the driver knows, per connection, which bridge schema shape its
        /// cached statements were prepared for, and clears them when a hand-out
        /// needs another (deadpool). Otherwise the router keeps one bridge pool for
        /// the common shape and one whose statements last a hand-out (sqlx).
        const STATEMENTS_PER_CONNECTION: bool = false;

        /// Bridge connections' statements may not fit their schemas any more
        /// (drivers with [`STATEMENTS_PER_CONNECTION`](Self::STATEMENTS_PER_CONNECTION)):
        /// each connection forgets them at its next hand-out.
        fn bridge_migrated(state: &Self::State) {
            let _ = state;
        }

        /// Runs [`schema_shape_sql`](crate::shape::schema_shape_sql), a simple
        /// query of one row and one text column, on a connection of `pool`.
        fn schema_shape(
            pool: &Self::Pool,
            sql: &str,
        ) -> impl Future<Output = Result<String, Error>> + Send;

        /// Runs [`HAZARDS_SQL`](crate::verify::HAZARDS_SQL) on a connection of `pool`.
        fn hazards(pool: &Self::Pool) -> impl Future<Output = Result<Vec<Hazard>, Error>> + Send;
    }
}
