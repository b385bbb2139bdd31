//! A real PostgreSQL for tests: a throwaway cluster started from the machine's
//! PostgreSQL binaries, or the server named by `TENANTS_TEST_DATABASE_URL`.
//!
//! The cluster is started once per test binary, on first use, on a free loopback port,
//! and removed when the test binary exits (a watchdog process stops it once the test
//! process is gone, however it ended). PostgreSQL refuses to run as root; when the tests
//! run as root, the cluster runs as the `postgres` user.
//!
//! When neither a server URL nor PostgreSQL binaries are available, the calling test
//! fails with a message saying how to install PostgreSQL: a missing server is never a
//! silently skipped test. [`TestServer::pgbouncer`] puts a pgbouncer in transaction
//! mode in front of the server, for the tests of deployments behind a pooler, and
//! [`citus`] starts a Citus coordinator with two workers for the Citus suite.
//!
//! # Examples
//!
//! ```no_run
//! let pg = tenants_test_support::postgres();
//! let url = pg.fresh_database();          // a new, empty database for this test
//! let answer = pg.psql(&url, "SELECT 40 + 2");
//! assert_eq!(answer, "42");
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use url::{Host, Url};

mod citus;
mod pgbouncer;
mod tls;

pub use citus::{CITUS_URL_ENV, CitusCluster, citus};
pub use pgbouncer::{Pgbouncer, PgbouncerConfig};
pub use tls::{CHANNEL_BINDING_USER, tls_postgres, tls_postgres_expired, unrelated_ca_file};

/// Environment variable naming an existing server to test against. It must be a
/// superuser connection URL: tests create databases and roles.
pub const DATABASE_URL_ENV: &str = "TENANTS_TEST_DATABASE_URL";

pub(crate) const INSTALL_HINT: &str = "\
PostgreSQL is needed to run these tests, and none was found.
Either install it:
    Debian/Ubuntu: apt-get install -y postgresql
    macOS:         brew install postgresql
(the tests look for initdb and pg_ctl on PATH and under /usr/lib/postgresql/*/bin),
or point the tests at a server with a superuser URL:
    TENANTS_TEST_DATABASE_URL=postgres://user:password@host:5432/postgres";

/// A PostgreSQL server for tests. Get it with [`postgres`].
#[derive(Debug)]
pub struct TestServer {
    admin_url: String,
    host: String,
    port: u16,
    psql: PathBuf,
    ca_file: Option<PathBuf>,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The test server of this process, started on first use.
///
/// # Panics
///
/// Panics with installation instructions when no server can be had.
pub fn postgres() -> &'static TestServer {
    SERVER.get_or_init(|| match start() {
        Ok(server) => server,
        Err(why) => panic!("{why}\n\n{INSTALL_HINT}"),
    })
}

static FEW_LOCKS: OnceLock<TestServer> = OnceLock::new();

/// A second cluster of this process, started on first use, whose shared lock table
/// is small (`max_locks_per_transaction = 10`: about 3,000 locks in all, where
/// [`postgres`] has 19,200), for tests that exhaust it (a session holding more
/// temporary tables than one transaction can lock) without failing the tests that
/// share [`postgres`] meanwhile. Always a cluster of its own, even with
/// `TENANTS_TEST_DATABASE_URL` set. Autovacuum is off: it would drop the
/// temporary tables a backend could not drop on its way out while the tests do
/// (and deadlock with them).
///
/// # Panics
///
/// Panics with installation instructions when PostgreSQL's binaries are missing.
pub fn postgres_with_few_locks() -> &'static TestServer {
    FEW_LOCKS.get_or_init(|| {
        let setup = ClusterSetup {
            options: "-c max_locks_per_transaction=10 -c autovacuum=off".into(),
            ..ClusterSetup::default()
        };
        let started = find_bin_dir()
            .ok_or_else(|| "initdb was not found".to_owned())
            .and_then(|bin| Cluster::start(&bin, &setup));
        started.unwrap_or_else(|why| panic!("{why}\n\n{INSTALL_HINT}"))
    })
}

/// A name unique within this machine's test runs, for databases and roles:
/// `{prefix}_{pid}_{counter}`, lowercase and a valid SQL identifier for a valid prefix.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new directory for a test's tenants file, `{prefix}-{tag}` under the system's
/// temporary directory, holding its shared migration `migrations/{name}` with
/// `sql`; its path.
///
/// # Panics
///
/// Panics when the directory or the file cannot be written.
pub fn tenants_dir(prefix: &str, tag: &str, (name, sql): (&str, &str)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{tag}"));
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(&migrations)
        .and_then(|()| std::fs::write(migrations.join(name), sql))
        .unwrap_or_else(|e| panic!("cannot write {migrations:?}: {e}"));
    dir
}

impl TestServer {
    /// A superuser connection URL to the `postgres` database.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The server's host (for a `TENANTS_TEST_DATABASE_URL` server, as its URL says).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port (for a `TENANTS_TEST_DATABASE_URL` server, as its URL says).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) of a [`tls_postgres`] server's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The admin URL with another database name.
    pub fn url_for(&self, database: &str) -> String {
        with_database(&self.admin_url, database)
    }

    /// A URL connecting to `database` as `user` with `password` (test roles get a
    /// password, so the URL works on trust and password-authenticated servers alike).
    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        with_user(&self.url_for(database), user, password)
    }

    /// Creates a new, empty database with a unique name and returns its superuser URL.
    pub fn fresh_database(&self) -> String {
        let name = unique_name("test");
        self.psql(&self.admin_url, &format!("CREATE DATABASE \"{name}\""));
        self.url_for(&name)
    }

    /// Runs SQL through `psql` against `url` and returns the unaligned, tuples-only
    /// output, trimmed.
    ///
    /// # Panics
    ///
    /// Panics with psql's message when the SQL fails.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        self.try_psql(url, sql)
            .unwrap_or_else(|error| panic!("psql failed on {sql:?}: {error}"))
    }

    /// Like [`psql`](Self::psql), with psql's error output as the error.
    pub fn try_psql(&self, url: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(&self.psql)
            .args([
                "--no-psqlrc",
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg("-d")
            .arg(url)
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.psql.display()));
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

fn parse(url: &str) -> Url {
    Url::parse(url).unwrap_or_else(|e| panic!("not a connection URL: {url:?}: {e}"))
}

/// Replaces the database of a `postgres://` URL.
fn with_database(url: &str, database: &str) -> String {
    let mut url = parse(url);
    url.set_path(&format!("/{database}"));
    url.into()
}

/// The host (IPv6 addresses without brackets) and port of a `postgres://` URL
/// (port 5432 when absent).
fn address(url: &str) -> (String, u16) {
    let url = parse(url);
    let host = match url.host() {
        Some(Host::Ipv6(address)) => address.to_string(),
        Some(host) => host.to_string(),
        None => "localhost".to_owned(),
    };
    (host, url.port().unwrap_or(5432))
}

/// Replaces the host and port of a `postgres://` URL.
fn with_port(url: &str, host: &str, port: u16) -> String {
    let mut url = parse(url);
    // Only URLs without a host refuse a port; these all have one.
    let _ = url.set_host(Some(host));
    let _ = url.set_port(Some(port));
    url.into()
}

/// `url` with its query string replaced by `params` (`sslmode=require&...`), or
/// removed when `params` is empty.
pub fn with_params(url: &str, params: &str) -> String {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{params}")
    }
}

/// Replaces the user and password of a `postgres://` URL.
fn with_user(url: &str, user: &str, password: &str) -> String {
    let mut url = parse(url);
    // Only URLs without a host refuse credentials; these all have one.
    let _ = url.set_username(user);
    let _ = url.set_password(Some(password));
    url.into()
}

fn start() -> Result<TestServer, String> {
    if let Ok(url) = std::env::var(DATABASE_URL_ENV) {
        return server_at(&url);
    }
    let bin = find_bin_dir().ok_or("initdb was not found")?;
    Cluster::start(&bin, &ClusterSetup::default())
}

/// A running server named by a superuser `url`, checked with one query.
pub(crate) fn server_at(url: &str) -> Result<TestServer, String> {
    let bin = find_bin_dir().map(|d| d.join("psql"));
    let psql = bin
        .filter(|p| p.exists())
        .or_else(|| which("psql"))
        .ok_or("psql is needed to prepare test databases and was not found")?;
    let (host, port) = address(url);
    let server = TestServer {
        host,
        port,
        admin_url: url.to_owned(),
        psql,
        ca_file: None,
    };
    server.psql(&server.admin_url, "SELECT 1");
    Ok(server)
}

/// Looks for a directory holding `initdb` and `pg_ctl`: PATH first, then the highest
/// version under `/usr/lib/postgresql`.
pub(crate) fn find_bin_dir() -> Option<PathBuf> {
    if let Some(initdb) = which("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent()
            && dir.join("pg_ctl").exists()
        {
            return Some(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What a cluster gets beyond the defaults.
#[derive(Default)]
pub(crate) struct ClusterSetup {
    /// `listen_addresses`; `127.0.0.1` when empty.
    listen: &'static str,
    /// The host name in the admin URL; `127.0.0.1` when empty.
    host: &'static str,
    /// More `-c` options for the server.
    options: String,
    /// Files written into the data directory after initdb (name, contents, mode).
    files: Vec<(&'static str, String, u32)>,
    /// The CA certificate file of a TLS cluster, outside the data directory.
    ca_file: Option<(&'static str, String)>,
}

/// Starting and watching a throwaway cluster.
pub(crate) struct Cluster;

impl Cluster {
    pub(crate) fn start(bin: &Path, setup: &ClusterSetup) -> Result<TestServer, String> {
        let as_root = is_root();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("tenants-pg-{}-{stamp}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        if as_root {
            run(Command::new("chown").arg("postgres:").arg(&dir), "chown")
                .map_err(|e| format!("{e}\n(running as root needs a `postgres` user)"))?;
        }
        let initdb = bin.join("initdb");
        run(
            pg_command(as_root, &initdb)
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdout(Stdio::null()),
            "initdb",
        )?;
        let ca_file = match &setup.ca_file {
            Some((name, pem)) => {
                let path = dir.join(name);
                write_file(&path, pem, 0o644)?;
                Some(path)
            }
            None => None,
        };
        for (name, contents, mode) in &setup.files {
            write_file(&data.join(name), contents, *mode)?;
        }
        if as_root {
            run(
                Command::new("chown").arg("-R").arg("postgres:").arg(&dir),
                "chown",
            )?;
        }
        let listen = if setup.listen.is_empty() {
            "127.0.0.1"
        } else {
            setup.listen
        };
        let host = if setup.host.is_empty() {
            "127.0.0.1"
        } else {
            setup.host
        };
        let pg_ctl = bin.join("pg_ctl");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses={listen} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
                 -c shared_buffers=128MB {}",
                dir.display(),
                setup.options
            );
            let started = run(
                pg_command(as_root, &pg_ctl)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(dir.join("server.log"))
                    .args(["-w", "-t", "60", "-o", &options, "start"])
                    .stdout(Stdio::null()),
                "pg_ctl start",
            );
            match started {
                Ok(()) => {
                    watch(as_root, &pg_ctl, &dir, &data);
                    let mut admin_url = format!("postgres://postgres@{host}:{port}/postgres");
                    if let Some(ca) = &ca_file {
                        let ca = ca.display();
                        admin_url = format!("{admin_url}?sslmode=verify-full&sslrootcert={ca}");
                    }
                    let server = TestServer {
                        admin_url,
                        host: host.into(),
                        port,
                        psql: bin.join("psql"),
                        ca_file: ca_file.clone(),
                    };
                    return Ok(server);
                }
                Err(e) => {
                    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                    last_error = format!("{e}\n{log}");
                }
            }
        }
        Err(format!("the test cluster did not start: {last_error}"))
    }
}

/// Spawns a detached watchdog that stops the cluster and removes its directory once
/// this process is gone, however it ended.
fn watch(as_root: bool, pg_ctl: &Path, dir: &Path, data: &Path) {
    let stop = format!(
        "{} '{}' stop -D '{}' -m immediate",
        if as_root {
            "runuser -u postgres --"
        } else {
            ""
        },
        pg_ctl.display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    spawn_watchdog(&script);
}

/// Runs `script` in a detached shell that outlives this process on purpose (its
/// handle is dropped without waiting): the watchdogs that stop what the tests
/// started once the test process is gone.
fn spawn_watchdog(script: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| format!("cannot write {path:?}: {e}"))
}

fn pg_command(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }

    #[test]
    fn addresses_are_read() {
        assert_eq!(
            address("postgres://u:p@db.test:6543/x?y=1"),
            ("db.test".into(), 6543)
        );
        assert_eq!(address("postgres://db.test/x"), ("db.test".into(), 5432));
        assert_eq!(address("postgres://u@[::1]:7/x"), ("::1".into(), 7));
    }

    #[test]
    fn ports_are_replaced() {
        assert_eq!(
            with_port("postgres://u:p@db.test:5/x?y=1", "127.0.0.1", 6432),
            "postgres://u:p@127.0.0.1:6432/x?y=1"
        );
    }

    #[test]
    fn users_are_replaced() {
        assert_eq!(
            with_user("postgres://u:p@h:5/db?x=1", "app", "pw"),
            "postgres://app:pw@h:5/db?x=1"
        );
        assert_eq!(
            with_user("postgres://h:5/db", "app", "pw"),
            "postgres://app:pw@h:5/db"
        );
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("a"), unique_name("a"));
    }
}
