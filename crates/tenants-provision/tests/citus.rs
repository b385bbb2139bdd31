//! The provisioning engine on a Citus cluster (a coordinator and two workers): apply
//! distributes the pool tables by tenant, co-located, makes the shared schema's
//! tables reference tables and each bridge schema a distributed schema, forwards the
//! application role's settings, and converges; doctor reports what is not so; a
//! tenant moves to a node of its own while the application keeps serving it. Part of
//! the Citus suite, which runs on its own:
//!
//! ```sh
//! cargo test --workspace --all-features --test citus -- --ignored
//! ```

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tenants_core::{DataModel, Tenant};
use tenants_db::{Sqlx, TenantRouter};
use tenants_provision::{ApplyOptions, Finding, Format, Provisioner, TenantsFile};
use tenants_test_support::{CitusCluster, citus, tenants_dir, unique_name, with_params};

const MIGRATION: &str = "
CREATE TABLE todos (id bigserial, tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
    title text NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE tags (tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
    todo_id bigint NOT NULL, tag text NOT NULL, PRIMARY KEY (tenant_id, todo_id, tag));
";

const PASSWORD: &str = "app-password";

/// A tenants file for a fresh database of the cluster: two pool tables, a shared
/// schema holding a table, two pool and two bridge tenants.
struct Setup {
    cluster: &'static CitusCluster,
    url: String,
    tag: String,
    text: String,
    /// The directory of the tenants file and its migrations.
    dir: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let cluster = citus();
        let url = cluster.fresh_database();
        let tag = unique_name("c").replace('_', "x");
        let dir = tenants_dir("tenants-citus", &tag, ("0001_todos.sql", MIGRATION));
        // A shared table made by hand before apply, as an operator would.
        cluster.coordinator().psql(
            &url,
            "CREATE SCHEMA shared; CREATE TABLE shared.plans (name text PRIMARY KEY)",
        );
        let migrations = dir.join("migrations");
        // Plain: Citus's own certificate is X.509 v1, which sqlx cannot read (see
        // tenants-db's tests/citus.rs).
        let admin_url = with_params(&url, "sslmode=disable");
        let text = format!(
            r#"
[servers.main]
url = "{admin_url}"
app_role = "app_{tag}"
citus = true

[shared]
migrations = "{migrations}"
pool_tables = ["todos", "tags"]
schemas = ["shared"]

[tenants.pa-{tag}]
model = "pool"
[tenants.pb-{tag}]
model = "pool"
[tenants.ba-{tag}]
model = "bridge"
schema = "ba_{tag}"
[tenants.bb-{tag}]
model = "bridge"
schema = "bb_{tag}"
"#,
            migrations = migrations.display()
        );
        Setup {
            cluster,
            url,
            tag,
            text,
            dir,
        }
    }

    /// A fresh setup, its whole plan applied.
    async fn applied() -> (Setup, Provisioner) {
        let setup = Setup::new();
        let provisioner = setup.provisioner().await;
        common::apply_all(&provisioner).await;
        (setup, provisioner)
    }

    /// The application's router, on the coordinator declared as one.
    fn router(&self) -> TenantRouter<Sqlx> {
        let router = TenantRouter::builder().server("main", self.app_url());
        router.citus("main").build().unwrap()
    }

    async fn provisioner(&self) -> Provisioner {
        let file = TenantsFile::parse(&self.text, Format::Toml, "tenants.toml").unwrap();
        Provisioner::connect(file).await.unwrap()
    }

    fn psql(&self, sql: &str) -> String {
        self.cluster.coordinator().psql(&self.url, sql)
    }

    /// The application role's URL, plain as the admin's.
    fn app_url(&self) -> String {
        let database = self.url.rsplit('/').next().unwrap();
        let app = format!("app_{}", self.tag);
        self.psql(&format!("ALTER ROLE {app} PASSWORD '{PASSWORD}'"));
        let url = self.cluster.coordinator().url_as(&app, PASSWORD, database);
        with_params(&url, "sslmode=disable")
    }

    fn tenant(&self, id: &str) -> Tenant {
        let id = format!("{id}-{}", self.tag);
        let model = match id.starts_with('b') {
            true => DataModel::Bridge {
                schema: tenants_core::SqlIdent::new(id.replace('-', "_")).unwrap(),
            },
            false => DataModel::Pool,
        };
        Tenant::new(id.parse().unwrap(), model)
    }
}

/// What `citus_tables` and `citus_schemas` say about the file's objects.
fn assert_distributed(setup: &Setup) {
    let tables = setup.psql(
        "SELECT string_agg(table_name::text || ':' || citus_table_type || ':' || \
         distribution_column, ' ' ORDER BY table_name::text) FROM citus_tables \
         WHERE table_name::text IN ('todos', 'tags', 'shared.plans')",
    );
    assert_eq!(
        tables,
        "shared.plans:reference:<none> tags:distributed:tenant_id todos:distributed:tenant_id"
    );
    let colocations = setup.psql(
        "SELECT count(DISTINCT colocation_id) FROM citus_tables \
         WHERE table_name::text IN ('todos', 'tags')",
    );
    assert_eq!(colocations, "1", "pool tables co-located");
    let schemas = setup.psql(&format!(
        "SELECT string_agg(schema_name::text, ' ' ORDER BY schema_name::text) FROM citus_schemas \
         WHERE schema_name::text LIKE '%{}'",
        setup.tag
    ));
    let t = &setup.tag;
    assert_eq!(schemas, format!("ba_{t} bb_{t}"));
    let bridge_tables = setup.psql(&format!(
        "SELECT count(*) FROM citus_tables WHERE citus_table_type = 'schema' \
         AND table_name::text LIKE 'ba_{t}.%'"
    ));
    assert_eq!(bridge_tables, "3", "todos, tags and the migrations table");
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn apply_distributes_the_tenants_and_converges() {
    let setup = Setup::new();
    let provisioner = setup.provisioner().await;
    let plan = common::apply_all(&provisioner).await;
    let shown = plan.to_string();
    for expected in [
        "forward SET LOCAL to the Citus workers",
        "distribute by tenant_id, co-located with public.todos",
        "make reference tables (a copy on every node): shared.plans",
        "a distributed schema",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }
    assert_distributed(&setup);
    let again = provisioner.plan().await.unwrap();
    assert!(
        again.is_empty(),
        "a second apply has nothing to do:\n{again}"
    );
    assert_eq!(provisioner.doctor().await.unwrap(), Vec::<Finding>::new());
    let router = setup.router();
    router.verify().await.unwrap();
    for id in ["pa", "pb", "ba", "bb"] {
        let tenant = setup.tenant(id);
        let mut tx = router.begin(&tenant).await.unwrap();
        sqlx::query("INSERT INTO todos (title) VALUES ($1)")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM todos")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(titles, vec![id.to_owned()], "tenant {}", tenant.id);
        tx.commit().await.unwrap();
    }
    router.close().await;
    provisioner.close().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn doctor_reports_what_is_not_distributed() {
    let (setup, provisioner) = Setup::applied().await;
    let t = &setup.tag;
    setup.psql("SELECT undistribute_table('tags')");
    setup.psql(&format!(
        "ALTER ROLE app_{t} RESET citus.propagate_set_commands"
    ));
    setup.psql("CREATE TABLE shared.regions (name text PRIMARY KEY)");
    let findings: Vec<String> = (provisioner.doctor().await.unwrap().iter())
        .map(ToString::to_string)
        .collect();
    let expected = [
        format!("Citus does not forward role app_{t}'s SET LOCAL"),
        "on Citus, pool table public.tags: distribute by tenant_id, co-located with public.todos"
            .to_owned(),
        "on Citus, shared table shared.regions: is not a reference table".to_owned(),
    ];
    for expected in &expected {
        assert!(
            findings.iter().any(|f| f.starts_with(expected.as_str())),
            "{expected:?} not in {findings:#?}"
        );
    }
    assert_eq!(findings.len(), 3, "{findings:#?}");
    common::apply_all(&provisioner).await;
    assert_eq!(provisioner.doctor().await.unwrap(), Vec::<Finding>::new());
    provisioner.close().await;
}

/// Where a tenant's shards are: the distinct nodes of its placements.
fn nodes_of(setup: &Setup, tenant: &Tenant) -> String {
    let sql = match &tenant.model {
        DataModel::Bridge { schema } => format!(
            "SELECT string_agg(DISTINCT nodename || ':' || nodeport, ' ') FROM citus_shards \
             WHERE colocation_id = (SELECT colocation_id FROM citus_schemas \
                                    WHERE schema_name::text = '{schema}')"
        ),
        _ => format!(
            "SELECT string_agg(DISTINCT nodename || ':' || nodeport, ' ') FROM citus_shards \
             WHERE shardid IN (get_shard_id_for_distribution_column('todos', '{id}'), \
                               get_shard_id_for_distribution_column('tags', '{id}'))",
            id = tenant.id
        ),
    };
    setup.psql(&sql)
}

/// A load on `tenants` through the router until `stop`: each round one
/// transaction per tenant that inserts a row and counts the tenant's rows, which
/// must be exactly those it inserted (none lost, none foreign).
async fn serve(router: TenantRouter<Sqlx>, tenants: Vec<Tenant>, stop: Arc<AtomicBool>) -> usize {
    let mut rounds = 0usize;
    while !stop.load(Ordering::Relaxed) || rounds < 3 {
        rounds += 1;
        for tenant in &tenants {
            let mut tx = router.begin(tenant).await.unwrap();
            sqlx::query("INSERT INTO todos (title) VALUES ($1)")
                .bind(tenant.id.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
            let (rows, foreign): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE title <> $1) FROM todos \
                 WHERE tenant_id = $1",
            )
            .bind(tenant.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            assert_eq!((rows, foreign), (rounds as i64, 0), "tenant {}", tenant.id);
            tx.commit().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn tenants_move_to_a_node_of_their_own_while_served() {
    let (setup, provisioner) = Setup::applied().await;
    let router = setup.router();
    let tenants: Vec<Tenant> = ["pa", "pb", "ba", "bb"].map(|t| setup.tenant(t)).into();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(serve(router.clone(), tenants.clone(), stop.clone()));
    let workers = setup.cluster.worker_nodes();
    for tenant in [&tenants[0], &tenants[2]] {
        let before = nodes_of(&setup, tenant);
        let target = workers.iter().find(|w| **w != before).unwrap();
        provisioner
            .move_to_node(tenant.id, target)
            .await
            .unwrap_or_else(|e| panic!("moving {}: {e}", tenant.id));
        assert_eq!(&nodes_of(&setup, tenant), target, "tenant {}", tenant.id);
        // Again: already there, nothing to do.
        provisioner.move_to_node(tenant.id, target).await.unwrap();
    }
    let alone = setup.psql(&format!(
        "SELECT shardminvalue = shardmaxvalue FROM pg_dist_shard \
         WHERE shardid = get_shard_id_for_distribution_column('todos', '{}')",
        tenants[0].id
    ));
    assert_eq!(alone, "t", "the pool tenant has a shard of its own");
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.unwrap();
    assert!(
        rounds >= 3,
        "the load ran through the moves ({rounds} rounds)"
    );
    router.close().await;
    provisioner.close().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn list_shows_each_tenants_load() {
    let (setup, provisioner) = Setup::applied().await;
    let router = setup.router();
    let tenant = setup.tenant("pa");
    for _ in 0..5 {
        let mut tx = router.begin(&tenant).await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM todos WHERE tenant_id = $1")
            .bind(tenant.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let listed = provisioner.list().await.unwrap();
    let pa = listed.iter().find(|l| l.id == tenant.id).unwrap();
    let load = pa
        .load
        .expect("citus_stat_tenants counts the routed queries");
    assert!(load.queries >= 5 && load.reads >= 5, "{load:?}");
    let pb = listed
        .iter()
        .find(|l| l.id == setup.tenant("pb").id)
        .unwrap();
    assert_eq!(pb.load, None, "no query named tenant pb");
    router.close().await;
    provisioner.close().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn moves_are_refused_with_what_is_wrong() {
    let (setup, provisioner) = Setup::applied().await;
    let id = setup.tenant("pa").id;
    for (node, says) in [
        ("nowhere", "not host:port"),
        ("127.0.0.1:1", "not an active node"),
    ] {
        let error = provisioner.move_to_node(id, node).await.unwrap_err();
        assert!(error.to_string().contains(says), "{node}: {error}");
    }
    let stranger = "stranger".parse().unwrap();
    let node = &setup.cluster.worker_nodes()[0];
    let error = provisioner.move_to_node(stranger, node).await.unwrap_err();
    assert!(error.to_string().contains("not in the catalog"), "{error}");
    provisioner.close().await;
}

/// A migration file of two statements on a distributed table fails on Citus (it
/// reaches the shards as one message), with the remedy named; split into a file
/// per statement, it applies to the pool tables and every bridge schema.
#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn a_migration_of_several_statements_on_distributed_tables_names_the_remedy() {
    let (setup, provisioner) = Setup::applied().await;
    provisioner.close().await;
    let migrations = setup.dir.join("migrations");
    let two = "ALTER TABLE todos ADD COLUMN done boolean NOT NULL DEFAULT false;\n\
               CREATE INDEX todos_done ON todos (tenant_id, done);";
    std::fs::write(migrations.join("0002_done.sql"), two).unwrap();
    let provisioner = setup.provisioner().await;
    let plan = provisioner.plan().await.unwrap();
    let failed = match provisioner.apply(&plan, &ApplyOptions::new()).await {
        Ok(report) => report.to_string(),
        Err(error) => error.to_string(),
    };
    assert!(
        failed.contains("give each statement on a distributed table"),
        "{failed}"
    );
    provisioner.close().await;
    std::fs::remove_file(migrations.join("0002_done.sql")).unwrap();
    let one = "ALTER TABLE todos ADD COLUMN done boolean NOT NULL DEFAULT false";
    std::fs::write(migrations.join("0002_done.sql"), one).unwrap();
    let index = "CREATE INDEX todos_done ON todos (tenant_id, done)";
    std::fs::write(migrations.join("0003_done_index.sql"), index).unwrap();
    let provisioner = setup.provisioner().await;
    common::apply_all(&provisioner).await;
    let t = &setup.tag;
    let columns = setup.psql(&format!(
        "SELECT count(*) FROM information_schema.columns \
         WHERE column_name = 'done' AND table_schema IN ('public', 'ba_{t}', 'bb_{t}')"
    ));
    assert_eq!(columns, "3", "the pool table and both bridge schemas");
    provisioner.close().await;
}
