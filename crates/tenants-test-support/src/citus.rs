//! A Citus cluster for tests: a coordinator and two workers started from the
//! machine's PostgreSQL binaries with the Citus extension, or the cluster whose
//! coordinator `TENANTS_TEST_CITUS_URL` names.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::{Cluster, ClusterSetup, TestServer, find_bin_dir, unique_name, with_database};

/// Environment variable naming the coordinator of an existing Citus cluster to test
/// against: a superuser URL to a database where the `citus` extension exists and the
/// workers are added.
pub const CITUS_URL_ENV: &str = "TENANTS_TEST_CITUS_URL";

const CITUS_HINT: &str = "\
Citus is needed to run the Citus suite, and it is not installed in this machine's PostgreSQL.
Either build and install it (Citus 13.2 for PostgreSQL 15, https://github.com/citusdata/citus:
    apt-get install -y postgresql-server-dev-15 libkrb5-dev liblz4-dev libzstd-dev libcurl4-gnutls-dev
    ./configure && make with_llvm=no && make install with_llvm=no
the tests look for citus.so in `pg_config --pkglibdir`),
or point the suite at a cluster with a superuser URL to its coordinator:
    TENANTS_TEST_CITUS_URL=postgres://user:password@coordinator:5432/postgres";

/// A Citus cluster: the coordinator the application connects to, and its workers.
#[derive(Debug)]
pub struct CitusCluster {
    coordinator: TestServer,
    workers: Vec<TestServer>,
}

static CLUSTER: OnceLock<CitusCluster> = OnceLock::new();

/// The Citus cluster of this process, started on first use (about 5 s): three
/// PostgreSQL clusters with `shared_preload_libraries = 'citus'` and the
/// per-tenant statistics on (`citus.stat_tenants_track = all`), the first made the
/// coordinator (`citus_set_coordinator_host`), the others added as workers
/// (`citus_add_node`).
///
/// # Panics
///
/// Panics with instructions when Citus is not installed and no
/// `TENANTS_TEST_CITUS_URL` is set: the Citus suite never skips.
pub fn citus() -> &'static CitusCluster {
    CLUSTER.get_or_init(|| match start() {
        Ok(cluster) => cluster,
        Err(why) => panic!("{why}\n\n{CITUS_HINT}"),
    })
}

impl CitusCluster {
    /// The coordinator: where the application, the catalog and the provisioning
    /// engine connect.
    pub fn coordinator(&self) -> &TestServer {
        &self.coordinator
    }

    /// The workers, as `host:port` in the form `citus_add_node` and
    /// `tenants move --to-node` take.
    pub fn worker_nodes(&self) -> Vec<String> {
        let nodes = self.workers.iter();
        nodes
            .map(|w| format!("{}:{}", w.host(), w.port()))
            .collect()
    }

    /// Creates a database with a unique name on every node, with the `citus`
    /// extension in each and the workers added to the coordinator's (Citus keeps
    /// its metadata per database and does not create databases on workers itself),
    /// and returns its superuser URL on the coordinator.
    pub fn fresh_database(&self) -> String {
        // Adding nodes updates cluster-wide catalogs: two at once fail ("tuple
        // concurrently updated"), so the tests of one process take turns.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let name = unique_name("citus");
        for node in std::iter::once(&self.coordinator).chain(&self.workers) {
            create_citus_database(node, &name);
        }
        let url = self.coordinator.url_for(&name);
        self.add_nodes(&url);
        url
    }

    fn add_nodes(&self, url: &str) {
        let coordinator = &self.coordinator;
        let host = coordinator.host();
        let port = coordinator.port();
        coordinator.psql(
            url,
            &format!("SELECT citus_set_coordinator_host('{host}', {port})"),
        );
        for worker in &self.workers {
            let (host, port) = (worker.host(), worker.port());
            coordinator.psql(url, &format!("SELECT citus_add_node('{host}', {port})"));
        }
    }
}

fn create_citus_database(node: &TestServer, name: &str) {
    node.psql(node.admin_url(), &format!("CREATE DATABASE \"{name}\""));
    node.psql(&node.url_for(name), "CREATE EXTENSION citus");
}

fn start() -> Result<CitusCluster, String> {
    if let Ok(url) = std::env::var(CITUS_URL_ENV) {
        return existing(&url);
    }
    let bin = find_bin_dir().ok_or("initdb was not found")?;
    if !citus_installed(&bin) {
        return Err("citus.so is not in `pg_config --pkglibdir`".into());
    }
    let setup = || ClusterSetup {
        options: "-c shared_preload_libraries=citus -c max_prepared_transactions=100 \
                  -c citus.stat_tenants_track=all"
            .into(),
        ..ClusterSetup::default()
    };
    let coordinator = Cluster::start(&bin, &setup())?;
    let workers = (0..2)
        .map(|_| Cluster::start(&bin, &setup()))
        .collect::<Result<Vec<_>, _>>()?;
    for node in std::iter::once(&coordinator).chain(&workers) {
        node.psql(node.admin_url(), "CREATE EXTENSION citus");
    }
    let cluster = CitusCluster {
        coordinator,
        workers,
    };
    cluster.add_nodes(cluster.coordinator.admin_url());
    Ok(cluster)
}

/// A cluster named by `TENANTS_TEST_CITUS_URL`: its workers are read from the
/// coordinator, and reached with the coordinator URL's credentials.
fn existing(url: &str) -> Result<CitusCluster, String> {
    let coordinator = crate::server_at(url)?;
    let listed = coordinator.psql(
        url,
        "SELECT string_agg(node_name || ':' || node_port, ' ') FROM citus_get_active_worker_nodes()",
    );
    let workers = listed
        .split_whitespace()
        .map(|node| {
            let (host, port) = node.rsplit_once(':').ok_or("a worker without a port")?;
            let port: u16 = port.parse().map_err(|_| "a worker port that is no port")?;
            crate::server_at(&crate::with_port(
                &with_database(url, "postgres"),
                host,
                port,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if workers.is_empty() {
        return Err(format!(
            "{CITUS_URL_ENV} names a coordinator without workers"
        ));
    }
    Ok(CitusCluster {
        coordinator,
        workers,
    })
}

fn citus_installed(bin: &Path) -> bool {
    let output = Command::new(bin.join("pg_config"))
        .arg("--pkglibdir")
        .output();
    let Ok(output) = output else { return false };
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Path::new(&libdir).join("citus.so").is_file()
}
