//! A multi-tenant database for router tests, and one probe per driver.
//!
//! The world: an application role that is neither superuser nor BYPASSRLS nor owner
//! of anything; a shared database whose `notes` table is a pool table (RLS enabled,
//! forced, policy on `tenants.tenant_id`); a schema per bridge tenant and a database
//! per silo tenant, each with its own `notes`; the three tenant roles per tenant.
//! Every secret written is prefixed with its tenant's id, so a foreign row is
//! recognisable wherever it shows up.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tenants_core::{DataModel, SqlIdent, Tenant, TenantId};
use tenants_db::{RouterBuilder, TenantRole, TenantRouter};
use tenants_test_support::{CitusCluster, TestServer, postgres, unique_name, with_params};

pub const PASSWORD: &str = "test-password";

/// The tenants' tables and roles, and an application role to use them.
pub struct World {
    pub pg: &'static TestServer,
    pub database: String,
    pub app: String,
    pub pool: Vec<Tenant>,
    pub bridge: Vec<Tenant>,
    pub silo: Vec<Tenant>,
    /// The query string of the application's URLs, replacing the server's (empty:
    /// the server's own, such as a TLS server's `sslmode=verify-full`).
    pub params: &'static str,
}

impl World {
    /// `pool`, `bridge` and `silo` tenants of each model.
    pub fn new(pool: usize, bridge: usize, silo: usize) -> World {
        World::on(postgres(), pool, bridge, silo)
    }

    /// As [`World::new`], on `pg`.
    pub fn on(pg: &'static TestServer, pool: usize, bridge: usize, silo: usize) -> World {
        let database = unique_name("shared");
        pg.psql(pg.admin_url(), &format!("CREATE DATABASE {database}"));
        World::build(pg, database, false, pool, bridge, silo)
    }

    /// `pool` and `bridge` tenants on a Citus cluster: `notes` distributed by
    /// `tenant_id`, each bridge tenant's schema a distributed schema. The
    /// application role is left with Citus's default `citus.propagate_set_commands`.
    pub fn on_citus(cluster: &'static CitusCluster, pool: usize, bridge: usize) -> World {
        let url = cluster.fresh_database();
        let database = url.rsplit('/').next().unwrap().to_owned();
        World::build(cluster.coordinator(), database, true, pool, bridge, 0)
    }

    fn build(
        pg: &'static TestServer,
        database: String,
        citus: bool,
        pool: usize,
        bridge: usize,
        silo: usize,
    ) -> World {
        let tag = unique_name("w").replace('_', "-");
        let app = unique_name("app");
        let id = |kind: &str, i: usize| -> TenantId { format!("{tag}-{kind}{i}").parse().unwrap() };
        let ident = |id: &TenantId| SqlIdent::new(id.as_str().replace('-', "_")).unwrap();
        let pool: Vec<_> = (0..pool)
            .map(|i| Tenant::new(id("p", i), DataModel::Pool))
            .collect();
        let bridge: Vec<_> = (0..bridge)
            .map(|i| {
                let id = id("b", i);
                Tenant::new(id, DataModel::Bridge { schema: ident(&id) })
            })
            .collect();
        let silo: Vec<_> = (0..silo)
            .map(|i| {
                let id = id("s", i);
                Tenant::new(
                    id,
                    DataModel::Silo {
                        database: ident(&id),
                        server: None,
                    },
                )
            })
            .collect();

        let admin = pg.admin_url();
        pg.psql(
            admin,
            &format!("CREATE ROLE {app} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOBYPASSRLS"),
        );
        let shared = pg.url_for(&database);
        // A distributed table's keys lead with its distribution column.
        let (key, distribute) = if citus {
            (
                "PRIMARY KEY (tenant_id, id)",
                "SELECT create_distributed_table('notes', 'tenant_id');",
            )
        } else {
            ("PRIMARY KEY (id)", "")
        };
        let mut sql = format!(
            "CREATE TABLE notes (
                 id bigserial,
                 tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id'),
                 secret text NOT NULL, {key});
             {distribute}
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             ALTER TABLE notes FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_rows ON notes
                 USING (tenant_id = current_setting('tenants.tenant_id', true))
                 WITH CHECK (tenant_id = current_setting('tenants.tenant_id', true));
             GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO {app};
             GRANT USAGE ON SEQUENCE notes_id_seq TO {app};"
        );
        for tenant in &pool {
            sql.push_str(&roles(tenant, &app, "notes", "notes_id_seq"));
        }
        for tenant in &bridge {
            let DataModel::Bridge { schema } = &tenant.model else {
                unreachable!()
            };
            sql.push_str(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.notes (id bigserial PRIMARY KEY, secret text NOT NULL);
                 GRANT USAGE ON SCHEMA {schema} TO {app};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.notes TO {app};
                 GRANT USAGE ON SEQUENCE {schema}.notes_id_seq TO {app};"
            ));
            sql.push_str(&roles(
                tenant,
                &app,
                &format!("{schema}.notes"),
                &format!("{schema}.notes_id_seq"),
            ));
            sql.push_str(&format!(
                "GRANT USAGE ON SCHEMA {schema} TO {};",
                TenantRole::ALL
                    .map(|r| r.role_name(&tenant.id).to_string())
                    .join(", ")
            ));
        }
        if citus {
            // Citus refuses schema commands after a parallel operation in one
            // transaction: one statement at a time, each schema a distributed one.
            pg.psql(
                pg.admin_url(),
                &format!("ALTER DATABASE {database} SET citus.enable_schema_based_sharding = on"),
            );
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                pg.psql(&shared, statement);
            }
        } else {
            pg.psql(&shared, &sql);
        }
        for tenant in &silo {
            let DataModel::Silo { database, .. } = &tenant.model else {
                unreachable!()
            };
            pg.psql(admin, &format!("CREATE DATABASE {database}"));
            pg.psql(
                &pg.url_for(database.as_str()),
                &format!(
                    "CREATE TABLE notes (id bigserial PRIMARY KEY, secret text NOT NULL);
                     GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO {app};
                     GRANT USAGE ON SEQUENCE notes_id_seq TO {app};
                     {}",
                    roles(tenant, &app, "notes", "notes_id_seq")
                ),
            );
        }
        World {
            pg,
            database,
            app,
            pool,
            bridge,
            silo,
            // Citus gives its nodes an X.509 v1 certificate, which sqlx's TLS cannot
            // read (tests/citus.rs shows it); TLS is not what these tests are about.
            params: if citus { "sslmode=disable" } else { "" },
        }
    }

    /// The application role's URL to the shared database.
    pub fn app_url(&self) -> String {
        let url = self.pg.url_as(&self.app, PASSWORD, &self.database);
        match self.params {
            "" => url,
            params => with_params(&url, params),
        }
    }

    /// A router builder connecting as the application role.
    pub fn router<D: tenants_db::Driver>(&self) -> RouterBuilder<D> {
        TenantRouter::<D>::builder().server("main", self.app_url())
    }

    /// The application role's URL to the shared database through a proxy that
    /// holds back every answer of the server for a moment: a future waiting for
    /// the server is then always caught waiting.
    pub async fn slow_app_url(&self) -> String {
        let port = slow_proxy(self.pg.host(), self.pg.port()).await;
        format!(
            "postgres://{}:{PASSWORD}@127.0.0.1:{port}/{}",
            self.app, self.database
        )
    }

    /// Every tenant, all models.
    pub fn tenants(&self) -> Vec<Tenant> {
        self.pool
            .iter()
            .chain(&self.bridge)
            .chain(&self.silo)
            .cloned()
            .collect()
    }

    /// What a hostile handler of `victim` leaves on its session, for the next
    /// user of the connection to find: `SET ROLE` to a BYPASSRLS role the
    /// application may take (created here), the first bridge tenant's schema on the
    /// search path, the victim's tenant setting and a setting of its own, and a
    /// temporary table holding a victim's row (temporary tables come first on every
    /// search path).
    pub fn hostile_handler_sql(&self, victim: &Tenant) -> String {
        let bypass = unique_name("bypass");
        self.admin(&format!(
            "CREATE ROLE {bypass} NOLOGIN BYPASSRLS; GRANT SELECT, INSERT ON notes TO {bypass}; \
             GRANT {bypass} TO {}",
            self.app
        ));
        let DataModel::Bridge { schema } = &self.bridge[0].model else {
            unreachable!("worlds with hostile handlers have a bridge tenant")
        };
        format!(
            "SET ROLE {bypass}; SET search_path = {schema}, public; \
             SELECT set_config('tenants.tenant_id', '{victim}', false); \
             SET app.leftover = 'dirty'; \
             CREATE TEMP TABLE IF NOT EXISTS leftover (secret text) ON COMMIT PRESERVE ROWS; \
             INSERT INTO leftover VALUES ('{victim}:temp')",
            victim = victim.id
        )
    }

    /// What a handler runs to make the next hand-out's `DISCARD TEMP` fail on a
    /// server with a small lock table
    /// ([`postgres_with_few_locks`](tenants_test_support::postgres_with_few_locks)):
    /// it ends its own transaction if it has one, then, one transaction each (so
    /// that no transaction holds their locks together), a temporary `notes` holding
    /// a planted row (temporary tables come first on every search path) and
    /// `tables` more temporary tables of four relations each.
    pub fn temp_table_hoard(tables: usize) -> String {
        let mut sql = String::from(
            "COMMIT; BEGIN; \
             CREATE TEMP TABLE notes (id bigserial PRIMARY KEY, secret text NOT NULL); \
             INSERT INTO notes (secret) VALUES ('planted'); COMMIT; ",
        );
        for i in 0..tables {
            sql.push_str(&format!(
                "BEGIN; CREATE TEMP TABLE hoard_{i} (x text PRIMARY KEY); COMMIT; "
            ));
        }
        sql
    }

    /// Waits until no session shows `application_name` (set by a handler to mark
    /// its connection), for at most 10 s; false if one still does. (While a
    /// backend removes a hoard of temporary tables on its way out, even a new
    /// connection may be refused: that counts as not yet.)
    pub async fn until_gone(&self, application_name: &str) -> bool {
        let count = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"
        );
        let url = self.pg.url_for(&self.database);
        for _ in 0..200 {
            if self.pg.try_psql(&url, &count).as_deref() == Ok("0") {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Drops, one per transaction, the temporary tables of sessions that ended
    /// without dropping them: a backend that exits with more temporary tables than
    /// one transaction can lock leaves them behind, and the next backend given the
    /// same temporary schema cannot create a temporary table until they are gone
    /// (autovacuum drops them, in its own time).
    pub fn drop_orphaned_temp_tables(&self) {
        self.admin(
            "DO $$ DECLARE t record; BEGIN \
               FOR t IN SELECT n.nspname, c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname LIKE 'pg\\_temp\\_%' AND c.relkind = 'r' LOOP \
                 EXECUTE format('DROP TABLE IF EXISTS %I.%I', t.nspname, t.relname); \
                 COMMIT; \
               END LOOP; \
             END $$",
        );
    }

    /// Runs SQL as superuser on the shared database.
    pub fn admin(&self, sql: &str) -> String {
        self.pg.psql(&self.pg.url_for(&self.database), sql)
    }
}

/// Listens on a loopback port and forwards each connection to `host:port`,
/// delaying everything the server sends by a few milliseconds.
async fn slow_proxy(host: &str, port: u16) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    let server = format!("{host}:{port}");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = tokio::net::TcpStream::connect(&server).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n) = server_read.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    local
}

/// The three roles of a tenant, with exactly their privileges on its table, granted
/// to the application role.
fn roles(tenant: &Tenant, app: &str, table: &str, sequence: &str) -> String {
    TenantRole::ALL
        .iter()
        .map(|role| {
            let name = role.role_name(&tenant.id);
            format!(
                "CREATE ROLE {name} NOLOGIN; GRANT {} ON {table} TO {name}; \
                 GRANT USAGE ON SEQUENCE {sequence} TO {name}; GRANT {name} TO {app};",
                role.privileges().join(", ")
            )
        })
        .collect()
}

/// What a tenant transaction sees of its own confinement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub tenant_setting: String,
    pub search_path: String,
    pub user: String,
    /// `app.leftover`, a setting only a handler sets.
    pub leftover: String,
    /// `pg_temp.leftover`, a temporary table only a handler creates, if it exists.
    pub temp_table: String,
    /// Whether the transaction had written nothing yet (no transaction id).
    pub fresh: bool,
}

/// Waits until `router` listens for migration announcements (bridge schemas
/// share statements only from then on).
pub async fn until_listening<D: tenants_db::Driver>(router: &TenantRouter<D>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !router.stats().listening {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the router never listened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A silo tenant's database name.
pub fn silo_database(tenant: &Tenant) -> String {
    match &tenant.model {
        DataModel::Silo { database, .. } => database.to_string(),
        _ => panic!("{} is not a silo tenant", tenant.id),
    }
}

/// Panics if `seen` holds a row of another tenant than `tenant` (every row the
/// tests write starts with its tenant's id and a colon).
pub fn assert_own_rows(tenant: &Tenant, seen: &[String]) {
    let mine = format!("{}:", tenant.id);
    if let Some(foreign) = seen.iter().find(|s| !s.starts_with(&mine)) {
        panic!("tenant {} saw {foreign:?}", tenant.id);
    }
}

/// The rows each tenant committed, summed over a leak hunt's workers (each
/// returns its own counts by tenant id).
pub async fn committed_rows(
    workers: Vec<tokio::task::JoinHandle<std::collections::HashMap<String, usize>>>,
) -> std::collections::HashMap<String, usize> {
    let mut committed = std::collections::HashMap::new();
    for worker in workers {
        for (tenant, n) in worker.await.unwrap() {
            *committed.entry(tenant).or_default() += n;
        }
    }
    committed
}

/// What [`Probe::prepared_statements`] reads.
const PREPARED_STATEMENTS: &str = "SELECT count(*) FROM pg_prepared_statements";

/// The operations the tests run, written once per driver.
pub trait Probe: Clone + Send + Sync + 'static {
    /// In one tenant transaction: insert `secret`, read every visible secret, then
    /// commit or roll back.
    fn write_read(
        &self,
        tenant: &Tenant,
        secret: &str,
        commit: bool,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;

    /// In a tenant transaction that writes nothing: every visible secret.
    fn read(&self, tenant: &Tenant) -> impl Future<Output = Result<Vec<String>, String>> + Send;

    /// In one committed tenant transaction, each of `messages` as a simple query of
    /// its own: what a handler may send.
    fn send(
        &self,
        tenant: &Tenant,
        messages: &[&str],
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Like [`write_read`](Self::write_read), with no statement prepared beyond the
    /// transaction (deadpool's `prepare_cached` keeps named statements, which a
    /// transaction pooler before pgbouncer 1.21 loses between transactions).
    fn write_read_unprepared(
        &self,
        tenant: &Tenant,
        secret: &str,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;

    /// Runs `sql` (simple query) in a committed tenant transaction, or on a session
    /// hand-out when `in_transaction` is false: what a handler may leave behind.
    fn leave_behind(
        &self,
        tenant: &Tenant,
        sql: &str,
        in_transaction: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// On a session hand-out: runs `sql` (simple query), then reads what
    /// [`seen`](Self::seen) reads.
    fn session_seen_after(
        &self,
        tenant: &Tenant,
        sql: &str,
    ) -> impl Future<Output = Result<Seen, String>> + Send;

    /// On a session hand-out: what [`seen`](Self::seen) reads.
    fn session_seen(&self, tenant: &Tenant) -> impl Future<Output = Result<Seen, String>> + Send {
        self.session_seen_after(tenant, "")
    }

    /// The error of beginning a tenant transaction, if it fails.
    fn begin_error(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Option<tenants_db::Error>> + Send;

    /// Outside a transaction (the driver's connection form): every visible secret.
    fn session_read(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;

    /// Outside a transaction (the driver's connection form): the session's
    /// `tenants.tenant_id` and `statement_timeout`.
    fn session_settings(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<(String, String), String>> + Send;

    /// In a tenant transaction, by a simple query: the process id of the backend
    /// that serves it.
    fn backend(&self, tenant: &Tenant) -> impl Future<Output = Result<i64, String>> + Send {
        self.count(tenant, "SELECT pg_backend_pid()")
    }

    /// In a tenant transaction, by a simple query: how many prepared statements
    /// the connection's backend holds (`pg_prepared_statements`).
    fn prepared_statements(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<i64, String>> + Send {
        self.count(tenant, PREPARED_STATEMENTS)
    }

    /// In a committed tenant transaction: the one integer `sql` (a simple query)
    /// returns.
    fn count(&self, tenant: &Tenant, sql: &str)
    -> impl Future<Output = Result<i64, String>> + Send;

    /// At the start of a tenant transaction (as `role`, if any): its settings.
    fn seen(
        &self,
        tenant: &Tenant,
        role: Option<TenantRole>,
    ) -> impl Future<Output = Result<Seen, String>> + Send;

    /// In a tenant transaction as `role`: runs `sql`, then commits; the SQLSTATE
    /// on failure.
    fn run_as(
        &self,
        tenant: &Tenant,
        role: TenantRole,
        sql: &str,
    ) -> impl Future<Output = Result<u64, String>> + Send;

    /// In a tenant transaction: `SELECT * FROM notes` through the driver's
    /// statement cache; the column names.
    fn columns(&self, tenant: &Tenant) -> impl Future<Output = Result<Vec<String>, String>> + Send {
        self.columns_of(tenant, "SELECT * FROM notes")
    }

    /// In a tenant transaction: `sql` through the driver's statement cache; the
    /// column names of its first row.
    fn columns_of(
        &self,
        tenant: &Tenant,
        sql: &'static str,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;

    /// Begins a tenant transaction, reads its backend pid, lets `kill` terminate
    /// that backend, then runs one more statement: its error.
    fn killed_mid_transaction(
        &self,
        tenant: &Tenant,
        kill: impl Fn(i32) + Send,
    ) -> impl Future<Output = Result<String, String>> + Send;
}

/// What [`Probe::session_settings`] reads.
const SESSION_SETTINGS: &str = "SELECT coalesce(current_setting('tenants.tenant_id', true), ''), \
     current_setting('statement_timeout')";

/// What [`Probe::seen`] reads.
const SEEN: &str = "SELECT coalesce(current_setting('tenants.tenant_id', true), ''), \
     current_setting('search_path'), current_user::text, \
     pg_current_xact_id_if_assigned() IS NULL, \
     coalesce(current_setting('app.leftover', true), ''), \
     coalesce(to_regclass('pg_temp.leftover')::text, '')";

/// Drops the inner future at its `polls`-th poll, before polling it: run with
/// `polls` = 0, 1, 2, ... it cuts a future at every await point in turn.
pub struct CutAfter<F> {
    inner: Pin<Box<F>>,
    polls: usize,
}

impl<F: Future> CutAfter<F> {
    pub fn new(inner: F, polls: usize) -> Self {
        CutAfter {
            inner: Box::pin(inner),
            polls,
        }
    }
}

impl<F: Future> Future for CutAfter<F> {
    /// `None` when cut.
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(None);
        }
        self.polls -= 1;
        self.inner.as_mut().poll(cx).map(Some)
    }
}

#[cfg(feature = "sqlx")]
mod sqlx_probe {
    use super::*;
    use sqlx::{Column, Row};
    use tenants_db::Sqlx;

    fn text(e: impl std::fmt::Display) -> String {
        e.to_string()
    }

    fn state(e: impl Into<tenants_db::Error>) -> String {
        match e.into() {
            tenants_db::Error::Database(sqlx::Error::Database(db)) => {
                db.code().map_or_else(|| db.to_string(), |c| c.into_owned())
            }
            e => e.to_string(),
        }
    }

    fn seen_row(row: &sqlx::postgres::PgRow) -> Seen {
        Seen {
            tenant_setting: row.get(0),
            search_path: row.get(1),
            user: row.get(2),
            fresh: row.get(3),
            leftover: row.get(4),
            temp_table: row.get(5),
        }
    }

    impl Probe for TenantRouter<Sqlx> {
        async fn write_read(
            &self,
            tenant: &Tenant,
            secret: &str,
            commit: bool,
        ) -> Result<Vec<String>, String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            sqlx::query("INSERT INTO notes (secret) VALUES ($1)")
                .bind(secret)
                .execute(&mut *tx)
                .await
                .map_err(text)?;
            let seen = sqlx::query_scalar("SELECT secret FROM notes")
                .fetch_all(&mut *tx)
                .await
                .map_err(text)?;
            if commit {
                tx.commit().await.map_err(text)?;
            }
            Ok(seen)
        }

        async fn read(&self, tenant: &Tenant) -> Result<Vec<String>, String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            let seen = sqlx::query_scalar("SELECT secret FROM notes")
                .fetch_all(&mut *tx)
                .await
                .map_err(text)?;
            tx.commit().await.map_err(text)?;
            Ok(seen)
        }

        async fn send(&self, tenant: &Tenant, messages: &[&str]) -> Result<(), String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            for message in messages {
                let message = sqlx::AssertSqlSafe(message.to_string());
                sqlx::raw_sql(message)
                    .execute(&mut *tx)
                    .await
                    .map_err(text)?;
            }
            tx.commit().await.map_err(text)
        }

        async fn session_read(&self, tenant: &Tenant) -> Result<Vec<String>, String> {
            let mut conn = self.acquire(tenant).await.map_err(text)?;
            sqlx::query_scalar("SELECT secret FROM notes")
                .fetch_all(&mut *conn)
                .await
                .map_err(text)
        }

        async fn session_settings(&self, tenant: &Tenant) -> Result<(String, String), String> {
            let mut conn = self.acquire(tenant).await.map_err(text)?;
            sqlx::query_as(SESSION_SETTINGS)
                .fetch_one(&mut *conn)
                .await
                .map_err(text)
        }

        async fn count(&self, tenant: &Tenant, sql: &str) -> Result<i64, String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut *tx)
                .await
                .map_err(text)?;
            tx.commit().await.map_err(text)?;
            // `pg_backend_pid()` is an int4, `count(*)` an int8.
            row.try_get::<i64, _>(0)
                .or_else(|_| row.try_get::<i32, _>(0).map(i64::from))
                .map_err(text)
        }

        async fn seen(&self, tenant: &Tenant, role: Option<TenantRole>) -> Result<Seen, String> {
            let mut tx = match role {
                Some(role) => self.begin_as(tenant, role).await,
                None => self.begin(tenant).await,
            }
            .map_err(text)?;
            // Unnamed: the probe also runs behind a transaction pooler.
            let row = sqlx::query(SEEN)
                .persistent(false)
                .fetch_one(&mut *tx)
                .await
                .map_err(text)?;
            Ok(seen_row(&row))
        }

        async fn session_seen_after(&self, tenant: &Tenant, sql: &str) -> Result<Seen, String> {
            let mut conn = self.acquire(tenant).await.map_err(text)?;
            if !sql.is_empty() {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut *conn)
                    .await
                    .map_err(text)?;
            }
            let row = sqlx::query(SEEN)
                .fetch_one(&mut *conn)
                .await
                .map_err(text)?;
            Ok(seen_row(&row))
        }

        async fn write_read_unprepared(
            &self,
            tenant: &Tenant,
            secret: &str,
        ) -> Result<Vec<String>, String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            sqlx::query("INSERT INTO notes (secret) VALUES ($1)")
                .bind(secret)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(text)?;
            let seen = sqlx::query_scalar("SELECT secret FROM notes")
                .persistent(false)
                .fetch_all(&mut *tx)
                .await
                .map_err(text)?;
            tx.commit().await.map_err(text)?;
            Ok(seen)
        }

        async fn begin_error(&self, tenant: &Tenant) -> Option<tenants_db::Error> {
            self.begin(tenant).await.err()
        }

        async fn leave_behind(
            &self,
            tenant: &Tenant,
            sql: &str,
            in_transaction: bool,
        ) -> Result<(), String> {
            let sql = sqlx::AssertSqlSafe(sql.to_owned());
            if in_transaction {
                let mut tx = self.begin(tenant).await.map_err(text)?;
                sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(text)?;
                tx.commit().await.map_err(text)?;
            } else {
                let mut conn = self.acquire(tenant).await.map_err(text)?;
                sqlx::raw_sql(sql).execute(&mut *conn).await.map_err(text)?;
            }
            Ok(())
        }

        async fn run_as(
            &self,
            tenant: &Tenant,
            role: TenantRole,
            sql: &str,
        ) -> Result<u64, String> {
            let mut tx = self.begin_as(tenant, role).await.map_err(state)?;
            let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut *tx)
                .await
                .map_err(state)?;
            tx.commit().await.map_err(state)?;
            Ok(done.rows_affected())
        }

        async fn columns_of(
            &self,
            tenant: &Tenant,
            sql: &'static str,
        ) -> Result<Vec<String>, String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            let rows = sqlx::query(sql).fetch_all(&mut *tx).await.map_err(text)?;
            let row = rows.first().ok_or("no rows")?;
            Ok(row.columns().iter().map(|c| c.name().to_owned()).collect())
        }

        async fn killed_mid_transaction(
            &self,
            tenant: &Tenant,
            kill: impl Fn(i32) + Send,
        ) -> Result<String, String> {
            let mut tx = self.begin(tenant).await.map_err(text)?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *tx)
                .await
                .map_err(text)?;
            kill(pid);
            match sqlx::query("SELECT 1").execute(&mut *tx).await {
                Ok(_) => Err("a query on a killed backend succeeded".into()),
                Err(e) => Ok(e.to_string()),
            }
        }
    }
}

#[cfg(feature = "deadpool")]
mod deadpool_probe {
    use super::*;
    use tenants_db::Deadpool;

    fn text(e: impl std::fmt::Display) -> String {
        e.to_string()
    }

    fn state(e: tenants_db::Error) -> String {
        match &e {
            tenants_db::Error::Postgres(pg) => pg
                .code()
                .map_or_else(|| e.to_string(), |c| c.code().to_owned()),
            _ => e.to_string(),
        }
    }

    fn seen_row(row: &tenants_db::tokio_postgres::Row) -> Seen {
        Seen {
            tenant_setting: row.get(0),
            search_path: row.get(1),
            user: row.get(2),
            fresh: row.get(3),
            leftover: row.get(4),
            temp_table: row.get(5),
        }
    }

    impl Probe for TenantRouter<Deadpool> {
        async fn write_read(
            &self,
            tenant: &Tenant,
            secret: &str,
            commit: bool,
        ) -> Result<Vec<String>, String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            let insert = tx
                .prepare_cached("INSERT INTO notes (secret) VALUES ($1)")
                .await
                .map_err(text)?;
            tx.execute(&insert, &[&secret]).await.map_err(text)?;
            let select = tx
                .prepare_cached("SELECT secret FROM notes")
                .await
                .map_err(text)?;
            let seen = tx
                .query(&select, &[])
                .await
                .map_err(text)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if commit {
                tx.commit().await.map_err(text)?;
            }
            Ok(seen)
        }

        async fn read(&self, tenant: &Tenant) -> Result<Vec<String>, String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            let rows = tx
                .query("SELECT secret FROM notes", &[])
                .await
                .map_err(text)?;
            tx.commit().await.map_err(text)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        }

        async fn send(&self, tenant: &Tenant, messages: &[&str]) -> Result<(), String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            for message in messages {
                tx.batch_execute(message).await.map_err(text)?;
            }
            tx.commit().await.map_err(text)
        }

        async fn session_read(&self, tenant: &Tenant) -> Result<Vec<String>, String> {
            let client = self.client(tenant).await.map_err(text)?;
            let select = client
                .prepare_cached("SELECT secret FROM notes")
                .await
                .map_err(text)?;
            Ok(client
                .query(&select, &[])
                .await
                .map_err(text)?
                .iter()
                .map(|row| row.get(0))
                .collect())
        }

        async fn session_settings(&self, tenant: &Tenant) -> Result<(String, String), String> {
            let client = self.client(tenant).await.map_err(text)?;
            let row = client
                .query_one(SESSION_SETTINGS, &[])
                .await
                .map_err(text)?;
            Ok((row.get(0), row.get(1)))
        }

        async fn count(&self, tenant: &Tenant, sql: &str) -> Result<i64, String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            let messages = tx.simple_query(sql).await.map_err(text)?;
            tx.commit().await.map_err(text)?;
            messages
                .iter()
                .find_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                    _ => None,
                })
                .ok_or("no row")?
                .parse()
                .map_err(text)
        }

        async fn seen(&self, tenant: &Tenant, role: Option<TenantRole>) -> Result<Seen, String> {
            let tx = match role {
                Some(role) => self.begin_as(tenant, role).await,
                None => self.begin(tenant).await,
            }
            .map_err(text)?;
            let row = tx.query_one(SEEN, &[]).await.map_err(text)?;
            Ok(seen_row(&row))
        }

        async fn session_seen_after(&self, tenant: &Tenant, sql: &str) -> Result<Seen, String> {
            let client = self.client(tenant).await.map_err(text)?;
            if !sql.is_empty() {
                client.batch_execute(sql).await.map_err(text)?;
            }
            let row = client.query_one(SEEN, &[]).await.map_err(text)?;
            Ok(seen_row(&row))
        }

        async fn write_read_unprepared(
            &self,
            tenant: &Tenant,
            secret: &str,
        ) -> Result<Vec<String>, String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            tx.execute("INSERT INTO notes (secret) VALUES ($1)", &[&secret])
                .await
                .map_err(text)?;
            let seen = tx
                .query("SELECT secret FROM notes", &[])
                .await
                .map_err(text)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            tx.commit().await.map_err(text)?;
            Ok(seen)
        }

        async fn begin_error(&self, tenant: &Tenant) -> Option<tenants_db::Error> {
            self.begin(tenant).await.err()
        }

        async fn leave_behind(
            &self,
            tenant: &Tenant,
            sql: &str,
            in_transaction: bool,
        ) -> Result<(), String> {
            if in_transaction {
                let tx = self.begin(tenant).await.map_err(text)?;
                tx.batch_execute(sql).await.map_err(text)?;
                tx.commit().await.map_err(text)?;
            } else {
                let client = self.client(tenant).await.map_err(text)?;
                client.batch_execute(sql).await.map_err(text)?;
            }
            Ok(())
        }

        async fn run_as(
            &self,
            tenant: &Tenant,
            role: TenantRole,
            sql: &str,
        ) -> Result<u64, String> {
            let tx = self.begin_as(tenant, role).await.map_err(state)?;
            let done = tx.execute(sql, &[]).await.map_err(|e| state(e.into()))?;
            tx.commit().await.map_err(state)?;
            Ok(done)
        }

        async fn columns_of(
            &self,
            tenant: &Tenant,
            sql: &'static str,
        ) -> Result<Vec<String>, String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            let select = tx.prepare_cached(sql).await.map_err(text)?;
            let rows = tx.query(&select, &[]).await.map_err(text)?;
            let row = rows.first().ok_or("no rows")?;
            Ok(row.columns().iter().map(|c| c.name().to_owned()).collect())
        }

        async fn killed_mid_transaction(
            &self,
            tenant: &Tenant,
            kill: impl Fn(i32) + Send,
        ) -> Result<String, String> {
            let tx = self.begin(tenant).await.map_err(text)?;
            let pid: i32 = tx
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(text)?
                .get(0);
            kill(pid);
            match tx.execute("SELECT 1", &[]).await {
                Ok(_) => Err("a query on a killed backend succeeded".into()),
                Err(e) => Ok(e.to_string()),
            }
        }
    }
}
