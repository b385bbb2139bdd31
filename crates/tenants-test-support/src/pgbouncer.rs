//! A pgbouncer in transaction mode in front of the test server, one per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestServer, free_port, is_root, pg_command, run, spawn_watchdog, which, with_port};

const PGBOUNCER_HINT: &str = "\
pgbouncer is needed to run the transaction-pooler tests, and none was found.
Install it:
    Debian/Ubuntu: apt-get install -y pgbouncer
    macOS:         brew install pgbouncer
(the tests look for pgbouncer on PATH and in /usr/sbin)";

/// How a test's pgbouncer is set up. Every field has a default fit for the tests:
/// transaction mode, two server connections per database and user, every user
/// let in without a password.
#[derive(Debug, Clone)]
pub struct PgbouncerConfig {
    /// Roles that may connect (pgbouncer's `auth_file`); `postgres` is always there.
    pub users: Vec<String>,
    /// Database aliases: `(name clients use, database on the server)`. Any other
    /// name reaches the server's database of that name.
    pub aliases: Vec<(String, String)>,
    /// Startup parameters pgbouncer accepts and drops
    /// (`ignore_startup_parameters`); by default only `extra_float_digits`, which
    /// sqlx sends. Adding `options` makes it drop the tenant setting a silo
    /// connection carries, silently.
    pub ignore_startup_parameters: Vec<String>,
    /// Server connections per database and user (`default_pool_size`, default 2).
    pub pool_size: u32,
}

impl Default for PgbouncerConfig {
    fn default() -> Self {
        PgbouncerConfig {
            users: Vec::new(),
            aliases: Vec::new(),
            ignore_startup_parameters: vec!["extra_float_digits".into()],
            pool_size: 2,
        }
    }
}

/// A running pgbouncer (`pool_mode = transaction`) in front of a [`TestServer`];
/// stopped when dropped, or by a watchdog once the test process is gone.
#[derive(Debug)]
pub struct Pgbouncer {
    port: u16,
    dir: PathBuf,
}

impl TestServer {
    /// Starts a pgbouncer in transaction mode in front of this server, as the
    /// `postgres` user when the tests run as root (pgbouncer refuses root).
    ///
    /// # Panics
    ///
    /// Panics with installation instructions when pgbouncer is not installed, and
    /// with its log when it does not start.
    pub fn pgbouncer(&self, config: &PgbouncerConfig) -> Pgbouncer {
        let binary = which("pgbouncer")
            .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
            .unwrap_or_else(|| panic!("{PGBOUNCER_HINT}"));
        let as_root = is_root();
        let dir = std::env::temp_dir().join(crate::unique_name("tenants-pgbouncer"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port().unwrap_or_else(|e| panic!("{e}"));
            write_config(self, config, &dir, port);
            if as_root {
                run(
                    Command::new("chown").arg("-R").arg("postgres:").arg(&dir),
                    "chown",
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
            let started = run(
                pg_command(as_root, &binary)
                    .arg("-d")
                    .arg(dir.join("pgbouncer.ini"))
                    .stdout(Stdio::null()),
                "pgbouncer",
            );
            let pooler = Pgbouncer {
                port,
                dir: dir.clone(),
            };
            match started.and_then(|()| pooler.wait_until_listening()) {
                Ok(()) => {
                    pooler.watch();
                    return pooler;
                }
                Err(e) => {
                    let log =
                        std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
                    last_error = format!("{e}\n{log}");
                    // Dropping `pooler` stops whatever did start.
                }
            }
        }
        panic!("pgbouncer did not start: {last_error}");
    }
}

impl Pgbouncer {
    /// The port pgbouncer listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a URL of the server behind it) pointed at this pgbouncer instead.
    pub fn url(&self, url: &str) -> String {
        with_port(url, "127.0.0.1", self.port)
    }

    /// What pgbouncer has logged so far (one line per connection event, refusals
    /// included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("pgbouncer.pid"))
            .ok()
            .map(|pid| pid.trim().to_owned())
    }

    fn wait_until_listening(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("pgbouncer is not listening on port {}", self.port))
    }

    /// Stops pgbouncer once this process is gone, however it ended.
    fn watch(&self) {
        let Some(pid) = self.pid() else { return };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill {pid} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            dir = self.dir.display()
        );
        spawn_watchdog(&script);
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(&pid).status();
        }
    }
}

fn write_config(server: &TestServer, config: &PgbouncerConfig, dir: &Path, port: u16) {
    let (host, server_port) = (server.host(), server.port());
    let mut databases = String::new();
    for (alias, database) in &config.aliases {
        databases.push_str(&format!(
            "{alias} = host={host} port={server_port} dbname={database}\n"
        ));
    }
    databases.push_str(&format!("* = host={host} port={server_port}\n"));
    let ini = format!(
        "[databases]\n{databases}\n[pgbouncer]\n\
         listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {dir}/userlist.txt\n\
         pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = {pool}\n\
         ignore_startup_parameters = {ignore}\n\
         logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
         admin_users = postgres\n",
        dir = dir.display(),
        pool = config.pool_size,
        ignore = config.ignore_startup_parameters.join(","),
    );
    let users: String = std::iter::once("postgres")
        .chain(config.users.iter().map(String::as_str))
        .map(|user| format!("\"{user}\" \"\"\n"))
        .collect();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .unwrap_or_else(|e| panic!("cannot write {name} in {dir:?}: {e}"));
    };
    write("pgbouncer.ini", &ini);
    write("userlist.txt", &users);
    // A pidfile of an earlier attempt would be taken for this one's.
    let _ = std::fs::remove_file(dir.join("pgbouncer.pid"));
}
