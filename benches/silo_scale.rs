//! Silo routing at scale: 1,000 tenant databases behind a global budget of 64
//! connections, 8 concurrent clients, tenants chosen uniformly or Zipf-skewed
//! (s = 1); each unit of work a transaction with one point query. In the same run,
//! the same workload through pgbouncer in transaction mode with the same 64 server
//! connections (`max_user_connections = 64`, one server connection per database,
//! like the router's per-tenant cap of 1). Queries use the simple protocol on both
//! sides, because pgbouncer's transaction mode cannot carry prepared statements
//! (Debian 12 ships pgbouncer 1.18).
//!
//! It also prints the router's memory per open, idle silo pool (resident set growth
//! over 250 pools, each holding one idle connection).
//!
//! Run: `cargo bench -p tenants --bench silo_scale --features sqlx` with pgbouncer
//! installed (`apt-get install pgbouncer`; without it only the router runs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;
use tenants::db::{Sqlx, TenantRouter};
use tenants::{DataModel, SqlIdent, Tenant};

const TENANTS: usize = 1_000;
const BUDGET: u32 = 64;
const CLIENTS: u64 = 8;
const ROWS: u64 = 10;

struct Setup {
    role: String,
    tenants: Arc<Vec<Tenant>>,
}

fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let pg = tenants_test_support::postgres();
    let role = tenants_test_support::unique_name("app");
    let prefix = tenants_test_support::unique_name("silo");
    pg.psql(
        pg.admin_url(),
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'bench'"),
    );
    let template = format!("{prefix}_template");
    pg.psql(pg.admin_url(), &format!("CREATE DATABASE {template}"));
    pg.psql(
        &pg.url_for(&template),
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY, payload text NOT NULL);
             INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g;
             GRANT SELECT ON items TO {role};"
        ),
    );
    let tenants: Vec<Tenant> = (0..TENANTS)
        .map(|i| {
            Tenant::new(
                format!("t{i}").parse().unwrap(),
                DataModel::Silo {
                    database: SqlIdent::new(format!("{prefix}_{i}")).unwrap(),
                    server: None,
                },
            )
        })
        .collect();
    rt.block_on(async {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(pg.admin_url())
            .await
            .unwrap();
        let started = Instant::now();
        for tenant in &tenants {
            let DataModel::Silo { database, .. } = &tenant.model else {
                unreachable!()
            };
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {database} TEMPLATE {template}"
                )))
                .await
                .unwrap();
        }
        eprintln!(
            "created {TENANTS} tenant databases in {:?}",
            started.elapsed()
        );
        admin.close().await;
    });
    Setup {
        role,
        tenants: Arc::new(tenants),
    }
}

/// Zipf(s = 1) over the tenants: the inverse of the cumulative distribution.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / k as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        Zipf(
            weights
                .iter()
                .map(|w| {
                    sum += w / total;
                    sum
                })
                .collect(),
        )
    }

    fn pick(&self, uniform: f64) -> usize {
        self.0
            .partition_point(|&c| c < uniform)
            .min(self.0.len() - 1)
    }
}

/// Which tenant unit of work `n` goes to.
type Chooser = Arc<dyn Fn(u64) -> usize + Send + Sync>;

/// A well-spread hash of `n`, as a fraction in [0, 1).
fn unit(n: u64) -> f64 {
    let h = n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n >> 7);
    (h.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 11) as f64 / (1u64 << 53) as f64
}

/// pgbouncer in transaction mode in front of the test server, as the `postgres`
/// user when running as root (pgbouncer refuses root).
struct Pgbouncer {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Pgbouncer {
    fn start(role: &str) -> Option<Pgbouncer> {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())?;
        let pg = tenants_test_support::postgres();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tenants-pgbouncer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("pgbouncer.ini");
        // Clients log in as the application role itself (not a user forced per
        // database), so that max_user_connections caps all databases together.
        let users = dir.join("users.txt");
        std::fs::write(&users, format!("\"{role}\" \"bench\"\n")).unwrap();
        std::fs::write(
            &config,
            format!(
                "[databases]
* = host={host} port={server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = 1
max_user_connections = {BUDGET}
max_client_conn = 4000
max_db_connections = 1
ignore_startup_parameters = extra_float_digits,options,search_path,statement_timeout
logfile = {log}
",
                host = pg.host(),
                server = pg.port(),
                users = users.display(),
                log = dir.join("pgbouncer.log").display()
            ),
        )
        .unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        let mut command = if root {
            Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let child = command
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(500));
        Some(Pgbouncer {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // runuser does not pass the kill on; stop pgbouncer itself.
        let _ = Command::new("pkill")
            .args(["-f", &format!("tenants-pgbouncer-{}", std::process::id())])
            .status();
    }
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn benches(c: &mut Criterion) {
    let rt = common::runtime();
    let _guard = rt.enter();
    let setup = setup(&rt);
    let pg = tenants_test_support::postgres();
    let app_url = pg.url_as(&setup.role, "bench", "postgres");
    let zipf = Arc::new(Zipf::new(TENANTS));
    let choosers: [(&str, Chooser); 2] = [
        (
            "uniform",
            Arc::new(|n| (unit(n) * TENANTS as f64) as usize % TENANTS),
        ),
        ("zipf", {
            let zipf = zipf.clone();
            Arc::new(move |n| zipf.pick(unit(n)))
        }),
    ];
    let query = |n: u64| format!("SELECT payload FROM items WHERE id = {}", n % ROWS + 1);

    let router: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", &app_url)
        .silo_connections_per_tenant(1)
        .silo_budget(BUDGET)
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let bouncer = Pgbouncer::start(&setup.role);
    if bouncer.is_none() {
        eprintln!("pgbouncer not found: install it (apt-get install pgbouncer) for the comparison");
    }
    // One client-side pool per tenant database, through pgbouncer.
    let bounced: Option<Arc<Vec<sqlx::PgPool>>> = bouncer.as_ref().map(|b| {
        Arc::new(
            setup
                .tenants
                .iter()
                .map(|t| {
                    let DataModel::Silo { database, .. } = &t.model else {
                        unreachable!()
                    };
                    let url = format!(
                        "postgres://{}:bench@127.0.0.1:{}/{database}?statement-cache-capacity=0",
                        setup.role, b.port
                    );
                    PgPoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(Duration::from_secs(60))
                        .connect_lazy(&url)
                        .unwrap()
                })
                .collect(),
        )
    });

    for (name, choose) in &choosers {
        let mut group = c.benchmark_group(format!("silo 1000 tenants, budget 64, {name}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_secs(3))
            .measurement_time(Duration::from_secs(15));
        if let Some(pools) = &bounced {
            group.bench_function("baseline: pgbouncer (transaction mode)", |b| {
                b.iter_custom(|iters| {
                    let (pools, choose) = (pools.clone(), choose.clone());
                    common::run(&rt, iters, CLIENTS, move |n| {
                        let pool = pools[choose(n)].clone();
                        async move {
                            let mut tx = pool.begin().await.unwrap();
                            sqlx::raw_sql(sqlx::AssertSqlSafe(query(n)))
                                .fetch_all(&mut *tx)
                                .await
                                .unwrap();
                            tx.commit().await.unwrap();
                        }
                    })
                })
            });
        }
        group.bench_function("TenantRouter", |b| {
            b.iter_custom(|iters| {
                let (router, tenants, choose) =
                    (router.clone(), setup.tenants.clone(), choose.clone());
                common::run(&rt, iters, CLIENTS, move |n| {
                    let (router, tenants, t) = (router.clone(), tenants.clone(), choose(n));
                    async move {
                        let tenant = &tenants[t];
                        let mut tx = router.begin(tenant).await.unwrap();
                        sqlx::raw_sql(sqlx::AssertSqlSafe(query(n)))
                            .fetch_all(&mut *tx)
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                    }
                })
            })
        });
        group.finish();
    }
    rt.block_on(router.close());
    drop(bouncer);

    // Memory per open, idle silo pool.
    const OPEN: usize = 250;
    let wide: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", &app_url)
        .silo_connections_per_tenant(1)
        .silo_budget(OPEN as u32)
        .build()
        .unwrap();
    let before = resident_kib();
    rt.block_on(async {
        for tenant in &setup.tenants[..OPEN] {
            let mut tx = wide.begin(tenant).await.unwrap();
            sqlx::raw_sql("SELECT 1").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
    let after = resident_kib();
    eprintln!(
        "memory per open idle silo pool (one idle connection): {:.1} KiB ({} pools, RSS {before} -> {after} KiB)",
        (after.saturating_sub(before)) as f64 / OPEN as f64,
        wide.stats().open_silos,
    );
    rt.block_on(wide.close());
}

criterion_group!(silo_scale, benches);
criterion_main!(silo_scale);
