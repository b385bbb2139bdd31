//! The provisioning engine against a real PostgreSQL: apply creates exactly the
//! declared objects, the grants hold, a second apply does nothing, failures stay
//! with their tenant, and doctor finds the hazards.

mod common;

use std::path::PathBuf;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tenants_core::{DataModel, SqlIdent, Tenant, TenantId};
use tenants_db::{Driver, Error, Hazard, Sqlx, TenantRole, TenantRouter};
use tenants_provision::{
    ApplyOptions, Finding, Format, Password, Plan, Provisioner, Scope, TenantSpec, TenantState,
    TenantsFile, UserSpec,
};
use tenants_test_support::{TestServer, postgres, tenants_dir, unique_name};

const MIGRATION: &str = "
CREATE TABLE widgets (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE todos (id serial, tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
    title text NOT NULL, PRIMARY KEY (tenant_id, id));
";

/// A name part unique to this test run: lowercase letters and digits.
fn tag() -> String {
    unique_name("t").replace('_', "x")
}

struct Setup {
    pg: &'static TestServer,
    url: String,
    tag: String,
    dir: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let pg = postgres();
        let url = pg.fresh_database();
        let tag = tag();
        let dir = tenants_dir("tenants-provision", &tag, ("0001_widgets.sql", MIGRATION));
        Setup { pg, url, tag, dir }
    }

    /// The issue's file, with names made unique to this test.
    fn file_text(&self, extra: &str) -> String {
        let t = &self.tag;
        format!(
            r#"
[servers.main]
url = "{url}"
app_role = "app_{t}"
template = "template_{t}"

[shared]
migrations = "migrations"
pool_tables = ["todos"]

[tenants.shop-{t}]
name = "Building Shop Inc."
model = "silo"
database = "shop_{t}"
plan = "professional"
  [[tenants.shop-{t}.users]]
  name = "admin_{t}"
  role = "admin"
  password_env = "SHOP_ADMIN_PASSWORD"
  [[tenants.shop-{t}.users]]
  name = "dev_{t}"
  role = "developer"
  password_env = "SHOP_DEV_PASSWORD"
  [[tenants.shop-{t}.users]]
  name = "customer_{t}"
  role = "customer"
  password_env = "SHOP_CUSTOMER_PASSWORD"

[tenants.hardware-{t}]
name = "Hardware Store"
model = "bridge"
schema = "hardware_{t}"

[tenants.pool-{t}]
name = "Tenant A"
model = "pool"
{extra}"#,
            url = self.url
        )
    }

    fn load(&self, text: &str) -> TenantsFile {
        let path = self.dir.join("tenants.toml");
        std::fs::write(&path, text).unwrap();
        let mut file = TenantsFile::load(&path).unwrap();
        for tenant in &mut file.tenants {
            for user in &mut tenant.users {
                user.password = Password::Given(format!("secret-{}", user.name));
            }
        }
        file
    }

    async fn provisioner(&self, extra: &str) -> Provisioner {
        Provisioner::connect(self.load(&self.file_text(extra)))
            .await
            .unwrap()
            .parallelism(4)
    }

    /// A provisioner whose whole plan has been applied successfully.
    async fn applied(&self, extra: &str) -> Provisioner {
        let provisioner = self.provisioner(extra).await;
        common::apply_all(&provisioner).await;
        provisioner
    }

    fn sql(&self, database: &str, sql: &str) -> String {
        self.pg.psql(&self.pg.url_for(database), sql)
    }

    fn shared(&self, sql: &str) -> String {
        self.pg.psql(&self.url, sql)
    }

    fn url_as(&self, user: &str, database: &str) -> String {
        format!(
            "postgres://{user}:secret-{user}@{}:{}/{database}",
            self.pg.host(),
            self.pg.port()
        )
    }

    /// The tenant id `{name}-{tag}`.
    fn id(&self, name: &str) -> TenantId {
        format!("{name}-{}", self.tag).parse().unwrap()
    }

    /// The SQL name `{name}_{tag}`.
    fn ident(&self, name: &str) -> SqlIdent {
        SqlIdent::new(format!("{name}_{}", self.tag)).unwrap()
    }

    async fn connect_as(&self, user: &str, database: &str) -> PgConnection {
        PgConnection::connect(&self.url_as(user, database))
            .await
            .unwrap()
    }

    /// The application role's URL to the shared database.
    fn app_url(&self) -> String {
        format!(
            "postgres://app_{}@{}:{}/{}",
            self.tag,
            self.pg.host(),
            self.pg.port(),
            shared_db(&self.url)
        )
    }
}

fn shared_db(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_exactly_the_declared_objects_and_converges() {
    let s = Setup::new();
    let provisioner = s.provisioner("").await;

    let plan = provisioner.plan().await.unwrap();
    assert_plan_adds_every_kind_of_object(&s, &plan);
    let report = provisioner
        .apply(&plan, &ApplyOptions::new())
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.succeeded.len(), 3);
    assert_roles_are_the_declared_ones(&s);
    assert_storage_is_migrated_and_secured(&s);
    assert_grants_and_catalog_are_exact(&s);

    // A second apply changes nothing.
    let again = provisioner.plan().await.unwrap();
    assert!(again.is_empty(), "{again}");
    let report = provisioner
        .apply(&again, &ApplyOptions::new())
        .await
        .unwrap();
    assert_eq!(report.applied, 0);

    assert_users_act_within_their_roles(&s).await;
    assert_app_role_routes_every_model(&s, &provisioner).await;
    provisioner.close().await;
}

/// The first plan of the issue's file names every kind of object it adds.
fn assert_plan_adds_every_kind_of_object(s: &Setup, plan: &Plan) {
    let t = &s.tag;
    let text = plan.to_string();
    for line in [
        format!("+ database shop_{t}"),
        format!("+ schema hardware_{t}"),
        format!("+ role tenant_shop_{t}_developer"),
        format!("+ user dev_{t}"),
        format!("+ role app_{t}"),
        "+ catalog tenants.tenants".into(),
        "~ pool table public.todos".into(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
}

/// Roles: three group roles per tenant, the users, the application role.
fn assert_roles_are_the_declared_ones(s: &Setup) {
    let t = &s.tag;
    let roles = s.shared(&format!(
        "SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles \
         WHERE rolname LIKE '%{t}%'"
    ));
    let mut expected = vec![
        format!("admin_{t}:true"),
        format!("app_{t}:true"),
        format!("customer_{t}:true"),
        format!("dev_{t}:true"),
    ];
    for tenant in ["hardware", "pool", "shop"] {
        for role in ["admin", "customer", "developer"] {
            expected.push(format!("tenant_{tenant}_{t}_{role}:false"));
        }
    }
    expected.sort();
    assert_eq!(roles, expected.join(","));
    // Passwords are stored as SCRAM verifiers.
    assert!(
        s.shared(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'dev_{t}'"
        ))
        .starts_with("SCRAM-SHA-256$")
    );
}

/// Storage: the silo database, the bridge schema, both migrated; the pool table
/// secured.
fn assert_storage_is_migrated_and_secured(s: &Setup) {
    let t = &s.tag;
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = 'shop_{t}'"
        )),
        "1"
    );
    assert_eq!(
        s.sql(
            &format!("shop_{t}"),
            "SELECT count(*) FROM _sqlx_migrations"
        ),
        "1"
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM hardware_{t}._sqlx_migrations"
        )),
        "1"
    );
    // The pool table: RLS enabled and forced, with the policy.
    assert_eq!(
        s.shared(
            "SELECT relrowsecurity::text || relforcerowsecurity::text || \
             (SELECT count(*) FROM pg_policy WHERE polrelid = 'todos'::regclass)::text \
             FROM pg_class WHERE oid = 'todos'::regclass"
        ),
        "truetrue1"
    );
}

fn assert_grants_and_catalog_are_exact(s: &Setup) {
    let t = &s.tag;
    // Exactly the role's privileges.
    assert_eq!(
        s.sql(
            &format!("shop_{t}"),
            &format!(
                "SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) \
                 FROM information_schema.role_table_grants \
                 WHERE grantee = 'tenant_shop_{t}_developer' AND table_name = 'widgets'"
            )
        ),
        "INSERT,SELECT,UPDATE"
    );
    // The catalog holds the three tenants.
    assert_eq!(
        s.shared("SELECT string_agg(record->>'model', ',' ORDER BY record->>'model') FROM tenants.tenants"),
        "bridge,pool,silo"
    );
}

fn assert_permission_denied(refused: &sqlx::Error) {
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
}

/// As the developer, INSERT works and DELETE is refused; the customer only reads.
async fn assert_users_act_within_their_roles(s: &Setup) {
    let t = &s.tag;
    let mut dev = s
        .connect_as(&format!("dev_{t}"), &format!("shop_{t}"))
        .await;
    sqlx::query("INSERT INTO widgets (name) VALUES ('bolt')")
        .execute(&mut dev)
        .await
        .unwrap();
    let refused = sqlx::query("DELETE FROM widgets")
        .execute(&mut dev)
        .await
        .unwrap_err();
    assert_permission_denied(&refused);
    let mut customer = s
        .connect_as(&format!("customer_{t}"), &format!("shop_{t}"))
        .await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM widgets")
        .fetch_one(&mut customer)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let refused = sqlx::query("INSERT INTO widgets (name) VALUES ('nut')")
        .execute(&mut customer)
        .await
        .unwrap_err();
    assert_permission_denied(&refused);
}

/// The application role routes every model, and SET ROLE works for it.
async fn assert_app_role_routes_every_model(s: &Setup, provisioner: &Provisioner) {
    let t = &s.tag;
    let app_url = s.url_as(&format!("app_{t}"), &shared_db(&s.url));
    let router = TenantRouter::<Sqlx>::builder()
        .server("main", app_url)
        .build()
        .unwrap();
    router.verify().await.unwrap();
    for spec in &provisioner.file().tenants {
        let mut tx = router
            .begin_as(&spec.tenant, TenantRole::Developer)
            .await
            .unwrap();
        sqlx::query("INSERT INTO todos (title) VALUES ('x')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let deleted = sqlx::query("DELETE FROM todos").execute(&mut *tx).await;
        assert!(
            deleted.is_err(),
            "{}: a developer must not delete",
            spec.tenant.id
        );
    }
    let pool_tenant = &provisioner
        .file()
        .tenants
        .iter()
        .find(|t| t.tenant.model == DataModel::Pool)
        .unwrap()
        .tenant;
    let mut tx = router.begin(pool_tenant).await.unwrap();
    sqlx::query("INSERT INTO todos (title) VALUES ('mine')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        s.shared("SELECT tenant_id FROM todos WHERE title = 'mine'"),
        format!("pool-{t}"),
        "the tenant_id default comes from the tenant setting"
    );
    router.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_file_plans_the_difference_and_removed_tenants_need_allow_destroy() {
    let s = Setup::new();
    let t = &s.tag;
    let provisioner = s.applied("").await;

    // Rename a tenant, change a user's role, add a tenant, drop the pool tenant.
    let text = s
        .file_text("")
        .replace("name = \"Hardware Store\"", "name = \"Hardware Store Ltd\"")
        .replace("role = \"customer\"", "role = \"developer\"")
        .replace(
            &format!("[tenants.pool-{t}]\nname = \"Tenant A\"\nmodel = \"pool\"\n"),
            "",
        )
        + &format!("\n[tenants.new-{t}]\nmodel = \"bridge\"\n");
    let edited = Provisioner::connect(s.load(&text)).await.unwrap();
    let plan = edited.plan().await.unwrap();
    let shown = plan.to_string();
    let id = |p: &str| Scope::Tenant(format!("{p}-{t}").parse().unwrap());
    let lines = |scope| -> Vec<String> {
        plan.changes_of(scope)
            .map(|c| format!("{} {}", c.action.sign(), c.object))
            .collect()
    };
    assert_eq!(lines(id("hardware")), ["~ catalog entry"], "{shown}");
    assert_eq!(
        lines(id("shop")),
        [format!("~ user customer_{t}")],
        "{shown}"
    );
    assert!(
        lines(id("new")).contains(&format!("+ schema new_{t}")),
        "{shown}"
    );
    assert!(
        lines(id("pool")).iter().all(|l| l.starts_with('-')),
        "{shown}"
    );
    assert_eq!(
        plan.destroyed_tenants(),
        [format!("pool-{t}")
            .parse::<tenants_core::TenantId>()
            .unwrap()]
    );
    assert!(shown.contains("--allow-destroy"), "{shown}");

    // Apply refuses to drop data unless allowed, and changes nothing then.
    let refused = edited.apply(&plan, &ApplyOptions::new()).await.unwrap_err();
    assert!(matches!(refused, Error::DestroyRefused(_)), "{refused}");
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'new_{t}'"
        )),
        "0"
    );
    let report = edited
        .apply(&plan, &ApplyOptions::new().allow_destroy(true))
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenant_pool_{t}_%'"
        )),
        "0"
    );
    assert!(edited.plan().await.unwrap().is_empty());
    edited.close().await;
    provisioner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_migration_for_one_tenant_leaves_the_others_migrated() {
    let s = Setup::new();
    let t = &s.tag;
    let mut extra = String::new();
    for n in 0..4 {
        extra.push_str(&format!("[tenants.b{n}-{t}]\nmodel = \"bridge\"\n"));
    }
    let provisioner = s.provisioner(&extra).await;
    // Tenant b2's schema already holds a table the migration creates.
    s.shared(&format!(
        "CREATE SCHEMA b2_{t}; CREATE TABLE b2_{t}.widgets (x int)"
    ));
    let plan = provisioner.plan().await.unwrap();
    let report = provisioner
        .apply(&plan, &ApplyOptions::new())
        .await
        .unwrap();
    assert_eq!(report.failures.len(), 1, "{report}");
    let (failed, error) = &report.failures[0];
    assert_eq!(failed.as_str(), format!("b2-{t}"));
    assert!(error.to_string().contains("widgets"), "{error}");
    for n in [0, 1, 3] {
        assert_eq!(
            s.shared(&format!(
                "SELECT count(*) FROM b{n}_{t}._sqlx_migrations WHERE success"
            )),
            "1"
        );
    }
    // The failure is recorded, the tenant is not registered, and a rerun retries it.
    assert!(
        s.shared(&format!(
            "SELECT error FROM tenants.provisioned WHERE id = 'b2-{t}'"
        ))
        .contains("widgets")
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM tenants.tenants WHERE id = 'b2-{t}'"
        )),
        "0"
    );
    s.shared(&format!("DROP TABLE b2_{t}.widgets"));
    let report = provisioner.migrate(&ApplyOptions::new()).await.unwrap();
    assert!(report.is_success(), "{report}");
    let plan = provisioner.plan().await.unwrap();
    assert!(
        provisioner
            .apply(&plan, &ApplyOptions::new())
            .await
            .unwrap()
            .is_success()
    );
    assert!(provisioner.plan().await.unwrap().is_empty());
    provisioner.close().await;
}

/// A view a shared migration creates over a pool table (owned by the migrating
/// superuser, whom row-level security never filters) is made `security_invoker`
/// by apply, so a tenant reading it through the router sees its own rows only,
/// whether the view came with the first apply or with a later migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_pool_tables_read_as_their_caller() {
    let s = Setup::new();
    let t = &s.tag;
    std::fs::write(
        s.dir.join("migrations/0002_titles.sql"),
        "CREATE VIEW todo_titles AS SELECT tenant_id, title FROM todos;",
    )
    .unwrap();
    let provisioner = s.applied("[tenants.other]\nmodel = \"pool\"\n").await;
    provisioner.close().await;
    std::fs::write(
        s.dir.join("migrations/0003_later.sql"),
        "CREATE VIEW todo_count AS SELECT count(*) AS n FROM todos;",
    )
    .unwrap();
    let provisioner = s.provisioner("[tenants.other]\nmodel = \"pool\"\n").await;
    let report = provisioner.migrate(&ApplyOptions::new()).await.unwrap();
    assert!(report.is_success(), "{report}");
    assert!(provisioner.plan().await.unwrap().is_empty());
    s.shared(&format!(
        "INSERT INTO todos (tenant_id, title) VALUES ('pool-{t}', 'mine'), ('other', 'theirs');
         GRANT SELECT ON todo_titles, todo_count TO app_{t}"
    ));
    let app_url = s.app_url();
    let router: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", app_url)
        .build()
        .unwrap();
    let mine = Tenant::new(format!("pool-{t}").parse().unwrap(), DataModel::Pool);
    let mut tx = router.begin(&mine).await.unwrap();
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM todo_titles")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT n FROM todo_count")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((titles, count), (vec!["mine".to_owned()], 1));
    let findings = provisioner.doctor().await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    router.close().await;
    provisioner.close().await;
}

/// Keys of pool tables lead with tenant_id: a global unique key would answer one
/// tenant's insert with another's conflict, and a foreign key would accept another
/// tenant's row. plan refuses such keys on the live tables, one line per key; apply
/// refuses one a migration creates, after securing the table; doctor names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_pool_tables_lead_with_tenant_id() {
    let s = Setup::new();
    std::fs::write(
        s.dir.join("migrations/0002_titles.sql"),
        "CREATE UNIQUE INDEX todos_title ON todos (title);",
    )
    .unwrap();
    let provisioner = s.provisioner("").await;
    let plan = provisioner.plan().await.unwrap();
    let applied = provisioner.apply(&plan, &ApplyOptions::new()).await;
    let refused = match applied {
        Err(error) => error.to_string(),
        Ok(report) => {
            assert!(!report.is_success(), "{report}");
            report.to_string()
        }
    };
    assert!(
        refused.contains("public.todos: unique index todos_title (title)"),
        "{refused}"
    );
    assert!(refused.contains("lead each with tenant_id"), "{refused}");
    // The table was secured before the refusal.
    assert_eq!(
        s.shared(
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'todos'"
        ),
        "t"
    );
    s.shared(
        "ALTER TABLE todos ADD COLUMN parent int;
         ALTER TABLE todos ADD CONSTRAINT todos_id UNIQUE (id);
         ALTER TABLE todos ADD CONSTRAINT todos_parent FOREIGN KEY (parent) REFERENCES todos (id);",
    );
    let Err(Error::TenantScopedKeys { problems, .. }) = provisioner.plan().await else {
        panic!("plan must refuse the keys");
    };
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("foreign key todos_parent")),
        "{problems:#?}"
    );
    let findings = provisioner.doctor().await.unwrap();
    let keys = findings
        .iter()
        .filter(|f| f.to_string().contains("does not lead with tenant_id"))
        .count();
    assert_eq!(keys, 3, "{findings:#?}");
    s.shared(
        "ALTER TABLE todos DROP CONSTRAINT todos_parent, DROP CONSTRAINT todos_id;
         DROP INDEX todos_title;
         CREATE UNIQUE INDEX todos_title ON todos (tenant_id, title);",
    );
    common::apply_all(&provisioner).await;
    provisioner.close().await;
}

/// A migration that must run outside a transaction (`-- no-transaction`: `CREATE
/// INDEX CONCURRENTLY`) works for bridge tenants, in their own schema, and their
/// history is recorded in that schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_tenants_run_migrations_outside_a_transaction_in_their_schema() {
    let s = Setup::new();
    let t = &s.tag;
    std::fs::write(
        s.dir.join("migrations/0002_index.sql"),
        "-- no-transaction\nCREATE INDEX CONCURRENTLY widgets_name ON widgets (name);",
    )
    .unwrap();
    let provisioner = s.applied("").await;
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM pg_indexes \
             WHERE schemaname = 'hardware_{t}' AND indexname = 'widgets_name'"
        )),
        "1"
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM hardware_{t}._sqlx_migrations WHERE version = 2 AND success"
        )),
        "1"
    );
    assert!(provisioner.plan().await.unwrap().is_empty());
    provisioner.close().await;
}

/// `SELECT *` from the tenant's table, through each driver's statement cache (sqlx's
/// own; deadpool's `prepare_cached`): its column names.
async fn columns_sqlx(router: &TenantRouter<Sqlx>, tenant: &Tenant) -> Vec<String> {
    use sqlx::{Column, Row};
    let mut tx = router.begin(tenant).await.unwrap();
    let row = sqlx::query(table_of(tenant))
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("sqlx, tenant {}: {e}", tenant.id));
    tx.commit().await.unwrap();
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

async fn columns_deadpool(
    router: &TenantRouter<tenants_db::Deadpool>,
    tenant: &Tenant,
) -> Vec<String> {
    let tx = router.begin(tenant).await.unwrap();
    let select = tx.prepare_cached(table_of(tenant)).await.unwrap();
    let row = tx
        .query_one(&select, &[])
        .await
        .unwrap_or_else(|e| panic!("deadpool, tenant {}: {e}", tenant.id));
    tx.commit().await.unwrap();
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

fn table_of(tenant: &Tenant) -> &'static str {
    match tenant.model {
        DataModel::Pool => "SELECT * FROM todos LIMIT 1",
        _ => "SELECT * FROM widgets LIMIT 1",
    }
}

/// Waits (at most 10 s) for `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A router of `D` for the application role whose pools hold one connection each,
/// so a second request reuses the first one's connection and statement cache.
fn one_connection_router<D: Driver>(app_url: &str) -> TenantRouter<D> {
    TenantRouter::builder()
        .server("main", app_url)
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .build()
        .unwrap()
}

/// A row in the table `SELECT *` reads, for the pool, bridge and silo tenant.
fn add_a_row_for_every_model(s: &Setup) {
    let t = &s.tag;
    s.shared(&format!(
        "INSERT INTO todos (tenant_id, title) VALUES ('pool-{t}', 'x');
         INSERT INTO hardware_{t}.widgets (name) VALUES ('x')"
    ));
    s.sql(
        &format!("shop_{t}"),
        "INSERT INTO widgets (name) VALUES ('x')",
    );
}

/// Runs the engine's `migrate` with a migration adding a column to each table.
async fn migrate_new_columns(s: &Setup) {
    std::fs::write(
        s.dir.join("migrations/0002_more.sql"),
        "ALTER TABLE widgets ADD COLUMN colour text;
         ALTER TABLE todos ADD COLUMN done boolean NOT NULL DEFAULT false;",
    )
    .unwrap();
    let provisioner = s.provisioner("").await;
    let report = provisioner.migrate(&ApplyOptions::new()).await.unwrap();
    assert!(report.is_success(), "{report}");
    provisioner.close().await;
}

/// A migration that changes a table's shape between two requests, run by the
/// engine's `migrate`: the routers of both drivers, whose one-connection pools
/// cached `SELECT *` before it, serve the next request of every model with the new
/// columns, never "cached plan must not change result type".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_between_two_requests_leaves_no_stale_statement() {
    use tenants_db::Deadpool;
    let s = Setup::new();
    let t = &s.tag;
    let provisioner = s.applied("").await;
    let tenants: Vec<Tenant> = provisioner
        .file()
        .tenants
        .iter()
        .map(|spec| spec.tenant.clone())
        .collect();
    provisioner.close().await;
    add_a_row_for_every_model(&s);
    let sqlx: TenantRouter<Sqlx> = one_connection_router(&s.app_url());
    let deadpool: TenantRouter<Deadpool> = one_connection_router(&s.app_url());
    let listening = || {
        s.shared(&format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE usename = 'app_{t}' AND query ILIKE 'LISTEN%'"
        ))
    };
    eventually("both routers to listen", || listening() == "2").await;
    let mut before = Vec::new();
    for tenant in &tenants {
        let columns = columns_sqlx(&sqlx, tenant).await;
        assert_eq!(columns_deadpool(&deadpool, tenant).await, columns);
        before.push(columns);
    }

    migrate_new_columns(&s).await;
    // The shared database, the bridge tenant's schema and the silo database.
    eventually("the migrations to be heard", || {
        sqlx.stats().migrations_heard >= 3
            && deadpool.stats().migrations_heard >= 3
            && sqlx.stats().open_silos == 0
            && deadpool.stats().open_silos == 0
    })
    .await;

    for (tenant, mut expected) in tenants.iter().zip(before) {
        let new = if tenant.model == DataModel::Pool {
            "done"
        } else {
            "colour"
        };
        expected.push(new.to_owned());
        assert_eq!(columns_sqlx(&sqlx, tenant).await, expected, "{}", tenant.id);
        assert_eq!(
            columns_deadpool(&deadpool, tenant).await,
            expected,
            "{}",
            tenant.id
        );
    }
    sqlx.close().await;
    deadpool.close().await;
}

/// A tenants file whose server URL points at a transaction pooler is refused
/// before anything runs, naming the server: the engine's advisory locks and
/// per-connection search path would land on whichever server connection is free.
#[tokio::test]
async fn the_engine_refuses_an_admin_url_behind_a_transaction_pooler() {
    let s = Setup::new();
    let bouncer =
        s.pg.pgbouncer(&tenants_test_support::PgbouncerConfig::default());
    let text = s.file_text("").replace(&s.url, &bouncer.url(&s.url));
    let provisioner = Provisioner::connect(s.load(&text)).await.unwrap();
    match provisioner.plan().await {
        Err(Error::AdminBehindPooler { server }) => assert_eq!(server, "main"),
        other => panic!("expected AdminBehindPooler, got {other:?}"),
    }
    assert!(matches!(
        provisioner.doctor().await,
        Err(Error::AdminBehindPooler { .. })
    ));
    provisioner.close().await;
}

/// A tenant of the file whose schema is gone is a failure of `migrate`, never a
/// silent skip, and the other tenants are still migrated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_fails_a_tenant_whose_schema_is_missing_and_migrates_the_others() {
    let s = Setup::new();
    let t = &s.tag;
    let provisioner = s.applied("").await;
    provisioner.close().await;
    s.shared(&format!("DROP SCHEMA hardware_{t} CASCADE"));
    std::fs::write(
        s.dir.join("migrations/0002_colour.sql"),
        "ALTER TABLE widgets ADD COLUMN colour text;",
    )
    .unwrap();
    let provisioner = s.provisioner("").await;
    let report = provisioner.migrate(&ApplyOptions::new()).await.unwrap();
    assert_eq!(report.failures.len(), 1, "{report}");
    let (failed, error) = &report.failures[0];
    assert_eq!(failed.as_str(), format!("hardware-{t}"));
    assert!(
        matches!(error, Error::NotProvisioned { missing, .. } if missing.contains(&format!("hardware_{t}"))),
        "{error}"
    );
    assert!(error.to_string().contains("run apply"), "{error}");
    assert_eq!(
        s.sql(
            &format!("shop_{t}"),
            "SELECT count(*) FROM _sqlx_migrations WHERE version = 2 AND success"
        ),
        "1"
    );
    assert_eq!(
        s.shared("SELECT count(*) FROM _sqlx_migrations WHERE version = 2 AND success"),
        "1"
    );
    provisioner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_flags_disabled_rls_a_bypassrls_app_role_and_drift() {
    let s = Setup::new();
    let provisioner = s.provisioner("").await;
    let findings = provisioner.doctor().await.unwrap();
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::NotProvisioned { .. })),
        "{findings:?}"
    );
    let plan = provisioner.plan().await.unwrap();
    assert!(
        provisioner
            .apply(&plan, &ApplyOptions::new())
            .await
            .unwrap()
            .is_success()
    );
    let findings = provisioner.doctor().await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");

    drift_from_the_file(&s);
    assert_doctor_names_the_drift(&s, &provisioner.doctor().await.unwrap());
    undo_the_drift(&s);

    create_readers_with_owner_rights(&s);
    assert_doctor_names_readers_with_owner_rights(&s, &provisioner.doctor().await.unwrap());
    fix_readers_with_owner_rights(&s);
    let findings = provisioner.doctor().await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    provisioner.close().await;
}

/// RLS disabled on the pool table, a BYPASSRLS application role, a grant beyond
/// the customer role's, and a catalog entry of a tenant in no file.
fn drift_from_the_file(s: &Setup) {
    let t = &s.tag;
    s.shared("ALTER TABLE todos DISABLE ROW LEVEL SECURITY");
    s.shared(&format!("ALTER ROLE app_{t} BYPASSRLS"));
    s.sql(
        &format!("shop_{t}"),
        &format!("GRANT DELETE, TRUNCATE ON widgets TO tenant_shop_{t}_customer"),
    );
    s.shared(&format!(
        "INSERT INTO tenants.tenants (id, record) VALUES ('stray-{t}', '{{\"id\": \"stray-{t}\", \"model\": \"pool\"}}')"
    ));
}

fn assert_doctor_names_the_drift(s: &Setup, findings: &[Finding]) {
    let t = &s.tag;
    let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert!(
        findings.contains(&Finding::Hazard(Hazard::RlsDisabled {
            table: "public.todos".into()
        })),
        "{shown:#?}"
    );
    assert!(
        findings.contains(&Finding::Hazard(Hazard::BypassRls {
            role: format!("app_{t}")
        })),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|f| f.contains(&format!("tenant_shop_{t}_customer: DELETE, TRUNCATE"))),
        "{shown:#?}"
    );
    assert!(
        findings.contains(&Finding::NotDeclared {
            tenant: format!("stray-{t}").parse().unwrap()
        }),
        "{shown:#?}"
    );
}

fn undo_the_drift(s: &Setup) {
    let t = &s.tag;
    s.shared(&format!(
        "DELETE FROM tenants.tenants WHERE id = 'stray-{t}'"
    ));
    s.shared(&format!("ALTER ROLE app_{t} NOBYPASSRLS"));
    s.shared("ALTER TABLE todos ENABLE ROW LEVEL SECURITY");
    s.sql(
        &format!("shop_{t}"),
        &format!("REVOKE DELETE, TRUNCATE ON widgets FROM tenant_shop_{t}_customer"),
    );
}

/// Objects a shared migration run by a superuser creates over a pool table read
/// it with their owner's rights, and a bypassing role one SET ROLE away.
fn create_readers_with_owner_rights(s: &Setup) {
    let t = &s.tag;
    s.shared(&format!(
        "CREATE VIEW todo_titles AS SELECT title FROM todos;
         CREATE VIEW own_titles WITH (security_invoker = true) AS SELECT title FROM todos;
         CREATE MATERIALIZED VIEW todo_count AS SELECT count(*) FROM todos;
         CREATE FUNCTION every_todo() RETURNS bigint SECURITY DEFINER LANGUAGE sql
             AS 'SELECT count(*) FROM todos';
         CREATE ROLE bypass_{t} NOLOGIN BYPASSRLS; GRANT bypass_{t} TO app_{t};"
    ));
}

fn assert_doctor_names_readers_with_owner_rights(s: &Setup, findings: &[Finding]) {
    let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
    for hazard in [
        Hazard::ViewBypassesRls {
            view: "public.todo_titles".into(),
        },
        Hazard::MaterializedView {
            view: "public.todo_count".into(),
        },
        Hazard::SecurityDefiner {
            function: "every_todo()".into(),
        },
        Hazard::MemberOfBypassingRole {
            role: format!("bypass_{}", s.tag),
        },
    ] {
        assert!(findings.contains(&Finding::Hazard(hazard)), "{shown:#?}");
    }
    assert!(
        !shown.iter().any(|f| f.contains("own_titles")),
        "{shown:#?}"
    );
}

fn fix_readers_with_owner_rights(s: &Setup) {
    let t = &s.tag;
    s.shared(&format!(
        "ALTER VIEW todo_titles SET (security_invoker = true); DROP MATERIALIZED VIEW todo_count;
         ALTER FUNCTION every_todo() SECURITY INVOKER; REVOKE bypass_{t} FROM app_{t};
         DROP ROLE bypass_{t}"
    ));
}

/// What a connection with no tenant set sees of the pool table `todos`, and the
/// SQLSTATE of its insert.
async fn no_tenant(conn: &mut PgConnection) -> (i64, Option<String>) {
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM todos")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let code = match sqlx::query("INSERT INTO todos (title) VALUES ('nobody')")
        .execute(&mut *conn)
        .await
    {
        Ok(_) => None,
        Err(e) => e
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned()),
    };
    (seen, code)
}

/// With no tenant set (NULL on a new connection, `''` on one that ran a tenant
/// transaction), a pool table yields no rows and accepts no writes. A policy of an
/// earlier version is planned, made to fail closed by apply, and named by doctor
/// until then; a hand-written policy that widens on a missing tenant is named too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_tables_fail_closed_without_a_tenant() {
    const DENIED: &str = "42501";
    let s = Setup::new();
    let t = &s.tag;
    let provisioner = s.applied("").await;
    s.shared(&format!(
        "INSERT INTO todos (tenant_id, title) VALUES ('pool-{t}', 'mine'), ('', 'orphan')"
    ));
    let app_url = s.app_url();
    let mut conn = PgConnection::connect(&app_url).await.unwrap();
    assert_eq!(
        no_tenant(&mut conn).await,
        (0, Some(DENIED.into())),
        "setting NULL"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; SET LOCAL tenants.tenant_id = 'pool-{t}'; COMMIT"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let left: String = sqlx::query_scalar("SELECT current_setting('tenants.tenant_id', true)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, "", "PostgreSQL keeps the setting's placeholder");
    assert_eq!(
        no_tenant(&mut conn).await,
        (0, Some(DENIED.into())),
        "setting ''"
    );
    conn.close().await.unwrap();

    // The policy an earlier version wrote reads the setting without NULLIF.
    s.shared(
        "DROP POLICY tenant_isolation ON todos;
         CREATE POLICY tenant_isolation ON todos
             USING (tenant_id = current_setting('tenants.tenant_id', true))
             WITH CHECK (tenant_id = current_setting('tenants.tenant_id', true));
         CREATE POLICY open_when_unset ON todos
             USING (current_setting('tenants.tenant_id', true) IS NULL OR tenant_id = '');",
    );
    let findings = provisioner.doctor().await.unwrap();
    let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
    let policy_finding = |name: &str, says: &str| {
        findings.iter().any(|f| {
            matches!(f, Finding::Policy { policy, problem, .. }
                if policy == name && problem.contains(says))
        })
    };
    assert!(policy_finding("tenant_isolation", "NULLIF"), "{shown:#?}");
    assert!(policy_finding("open_when_unset", "no tenant"), "{shown:#?}");
    let plan = provisioner.plan().await.unwrap();
    assert!(
        plan.to_string().contains("refuse rows with no tenant"),
        "{plan}"
    );
    assert!(
        provisioner
            .apply(&plan, &ApplyOptions::new())
            .await
            .unwrap()
            .is_success()
    );
    s.shared("DROP POLICY open_when_unset ON todos");
    let findings = provisioner.doctor().await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    assert!(provisioner.plan().await.unwrap().is_empty());
    provisioner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_provisioning_is_idempotent_and_never_planned_as_a_drop() {
    let s = Setup::new();
    let t = &s.tag;
    let provisioner = s.applied("").await;

    let tenant = Tenant::new(
        format!("signup-{t}").parse().unwrap(),
        DataModel::Bridge {
            schema: SqlIdent::new(format!("signup_{t}")).unwrap(),
        },
    )
    .with_name("Signed Up");
    let spec = TenantSpec::new(tenant);
    provisioner.provision(&spec).await.unwrap();
    provisioner.provision(&spec).await.unwrap();
    assert_eq!(
        s.shared(&format!("SELECT count(*) FROM signup_{t}.widgets")),
        "0"
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT record->>'name' FROM tenants.tenants WHERE id = 'signup-{t}'"
        )),
        "Signed Up"
    );
    let plan = provisioner.plan().await.unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert!(provisioner.doctor().await.unwrap().is_empty());

    // Destroy drops it all.
    let id = format!("signup-{t}").parse().unwrap();
    let plan = provisioner.destroy_plan(id).await.unwrap();
    assert!(
        plan.to_string().contains(&format!("- schema signup_{t}")),
        "{plan}"
    );
    let report = provisioner
        .apply(&plan, &ApplyOptions::new().allow_destroy(true))
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'signup_{t}'"
        )),
        "0"
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM tenants.tenants WHERE id = 'signup-{t}'"
        )),
        "0"
    );
    provisioner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cannot_take_another_tenants_live_objects() {
    let s = Setup::new();
    let t = &s.tag;
    let provisioner = s.applied("").await;
    sign_up_with_a_login_user(&s, &provisioner).await;
    // Its schema, its user and its group role are not another tenant's to take.
    assert_plan_refused(
        &s,
        format!("[tenants.taker-{t}]\nmodel = \"bridge\"\nschema = \"signup_{t}\"\n"),
        format!("tenant taker-{t}: schema signup_{t} is tenant signup-{t}'s"),
    )
    .await;
    for (name, reason) in [
        (
            format!("signup_user_{t}"),
            format!(
                "user signup_user_{t} is another tenant's user (a member of tenant_signup_{t}_customer)"
            ),
        ),
        (
            format!("tenant_signup_{t}_admin"),
            format!("user tenant_signup_{t}_admin is another tenant's group role"),
        ),
    ] {
        assert_plan_refused(
            &s,
            silo_taker_with_user(t, &name),
            format!("tenant taker-{t}: {reason}"),
        )
        .await;
    }
    assert_signup_cannot_take_a_file_tenants_database(&s, &provisioner).await;
    assert_renaming_a_tenant_that_keeps_its_schema_is_refused(&s).await;
    assert_nothing_was_taken(&s);
    provisioner.close().await;
}

/// A tenant that signs up at runtime, with a login user: in no file.
async fn sign_up_with_a_login_user(s: &Setup, provisioner: &Provisioner) {
    let schema = s.ident("signup");
    let signup = Tenant::new(s.id("signup"), DataModel::Bridge { schema });
    let user = UserSpec::new(
        s.ident("signup_user"),
        TenantRole::Customer,
        Password::Given("signup-secret".into()),
    );
    provisioner
        .provision(&TenantSpec::new(signup).with_user(user))
        .await
        .unwrap();
}

/// Plans the file with `extra` tenants, and expects the plan refused.
async fn assert_plan_refused(s: &Setup, extra: String, reason: String) {
    let taker = s.provisioner(&extra).await;
    let err = taker.plan().await.unwrap_err().to_string();
    assert!(err.contains(&reason), "expected {reason:?} in {err}");
    assert!(err.contains("nothing was changed"), "{err}");
    taker.close().await;
}

/// The tenant `taker-{t}`, a silo, with one admin user named `user`.
fn silo_taker_with_user(t: &str, user: &str) -> String {
    format!(
        "[tenants.taker-{t}]\nmodel = \"silo\"\ndatabase = \"taker_{t}\"\n\
         [[tenants.taker-{t}.users]]\nname = \"{user}\"\nrole = \"admin\"\n\
         password_env = \"SHOP_ADMIN_PASSWORD\"\n"
    )
}

/// A signup cannot take a file tenant's database either.
async fn assert_signup_cannot_take_a_file_tenants_database(s: &Setup, provisioner: &Provisioner) {
    let t = &s.tag;
    let database = s.ident("shop");
    let squatter = Tenant::new(
        s.id("squatter"),
        DataModel::Silo {
            database,
            server: None,
        },
    );
    let err = provisioner
        .provision(&TenantSpec::new(squatter))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("database shop_{t} is tenant shop-{t}'s")),
        "{err}"
    );
}

/// Renaming a tenant in the file while keeping its schema would have planned the
/// old id's drop, schema and all; now it stops.
async fn assert_renaming_a_tenant_that_keeps_its_schema_is_refused(s: &Setup) {
    let t = &s.tag;
    let text = s.file_text("").replace(
        &format!("[tenants.hardware-{t}]"),
        &format!("[tenants.hardware2-{t}]"),
    );
    let renamed = Provisioner::connect(s.load(&text)).await.unwrap();
    let err = renamed.plan().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "tenant hardware2-{t}: schema hardware_{t} is tenant hardware-{t}'s"
        )),
        "{err}"
    );
    renamed.close().await;
}

/// The signup's user is still only its tenant's, and no taker's database exists.
fn assert_nothing_was_taken(s: &Setup) {
    let t = &s.tag;
    assert_eq!(
        s.shared(&format!(
            "SELECT string_agg(r.rolname, ',' ORDER BY r.rolname) FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE u.rolname = 'signup_user_{t}'"
        )),
        format!("tenant_signup_{t}_customer")
    );
    assert_eq!(
        s.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = 'taker_{t}'")
        ),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_migrations_provision_tenants_without_a_directory() {
    let pg = postgres();
    let url = pg.fresh_database();
    let t = tag();
    // No `[shared] migrations`: the migrations come from the binary.
    let file = TenantsFile::parse(
        &format!("[servers.main]\nurl = \"{url}\"\ntemplate = \"template_{t}\"\n"),
        Format::Toml,
        "runtime.toml",
    )
    .unwrap();
    let provisioner = Provisioner::connect(file)
        .await
        .unwrap()
        .migrations(sqlx::migrate!("tests/migrations"));
    let bridge = Tenant::new(
        format!("embedded-{t}").parse().unwrap(),
        DataModel::Bridge {
            schema: SqlIdent::new(format!("embedded_{t}")).unwrap(),
        },
    );
    let silo = Tenant::new(
        format!("embedded-silo-{t}").parse().unwrap(),
        DataModel::Silo {
            database: SqlIdent::new(format!("embedded_silo_{t}")).unwrap(),
            server: None,
        },
    );
    // Onboarding runs where applications run it: in a task of its own.
    let provisioner = std::sync::Arc::new(provisioner);
    for tenant in [&bridge, &silo] {
        let (provisioner, spec) = (provisioner.clone(), TenantSpec::new(tenant.clone()));
        tokio::spawn(async move { provisioner.provision(&spec).await })
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        pg.psql(&url, &format!("SELECT count(*) FROM embedded_{t}.notes")),
        "0"
    );
    assert_eq!(
        pg.psql(
            &pg.url_for(&format!("embedded_silo_{t}")),
            "SELECT max(version) FROM _sqlx_migrations"
        ),
        "1"
    );
    let plan = provisioner.plan().await.unwrap();
    assert!(plan.is_empty(), "{plan}");
    provisioner.close().await;
}

#[tokio::test]
async fn missing_environment_variables_are_named_before_anything_runs() {
    let file = TenantsFile::parse(
        "[servers.main]\nurl_env = \"TENANTS_TEST_SURELY_UNSET_URL\"\n",
        Format::Toml,
        "t.toml",
    )
    .unwrap();
    let err = Provisioner::connect(file).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("TENANTS_TEST_SURELY_UNSET_URL (URL of server main)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_built_in_code_naming_an_unknown_server_is_refused() {
    let mut file = TenantsFile::parse(
        "[servers.main]\nurl = \"postgres://nobody@127.0.0.1:1/x\"\n",
        Format::Toml,
        "t.toml",
    )
    .unwrap();
    file.tenants.push(TenantSpec::new(Tenant::new(
        "acme".parse().unwrap(),
        DataModel::Silo {
            database: SqlIdent::new("acme").unwrap(),
            server: Some("eu".into()),
        },
    )));
    let err = Provisioner::connect(file.clone()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("tenant acme: server \"eu\" is not among the servers"),
        "{err}"
    );
    file.default_server = "gone".into();
    let err = Provisioner::connect(file).await.unwrap_err();
    assert!(err.to_string().contains("\"gone\""), "{err}");
}

/// A file with two servers, main and eu, and one silo tenant, far, on eu.
fn far_tenant_on_eu(s: &Setup, eu_url: &str) -> String {
    let t = &s.tag;
    format!(
        r#"
[servers.main]
url = "{main}"
template = "template_main_{t}"
[servers.eu]
url = "{eu_url}"
app_role = "app_eu_{t}"
template = "template_eu_{t}"

[shared]
server = "main"
migrations = "migrations"

[tenants.far-{t}]
model = "silo"
server = "eu"
database = "far_{t}"
"#,
        main = s.url
    )
}

/// A silo tenant onboarded at runtime on eu is listed there, as the file's is.
async fn assert_runtime_silo_listed_on_eu(s: &Setup, provisioner: &Provisioner, near: TenantId) {
    let t = &s.tag;
    let model = DataModel::Silo {
        database: s.ident("near"),
        server: Some("eu".into()),
    };
    let spec = TenantSpec::new(Tenant::new(near, model));
    provisioner.provision(&spec).await.unwrap();
    let listed = provisioner.list().await.unwrap();
    let location = |id: &str| {
        let tenant = listed.iter().find(|l| l.id == id).unwrap();
        (tenant.location.clone(), tenant.state.clone())
    };
    assert_eq!(
        location(&format!("far-{t}")),
        (format!("database far_{t} on eu"), TenantState::Ready)
    );
    assert_eq!(
        location(&format!("near-{t}")),
        (format!("database near_{t} on eu"), TenantState::Runtime)
    );
}

/// Applies the destroy plan of tenant `id`.
async fn destroy(provisioner: &Provisioner, id: TenantId) {
    let plan = provisioner.destroy_plan(id).await.unwrap();
    let report = provisioner
        .apply(&plan, &ApplyOptions::new().allow_destroy(true))
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silo_tenants_live_on_the_server_they_name() {
    let s = Setup::new();
    let t = &s.tag;
    let eu_url = s.pg.fresh_database();
    let text = far_tenant_on_eu(&s, &eu_url);
    let provisioner = Provisioner::connect(s.load(&text)).await.unwrap();
    let plan = provisioner.plan().await.unwrap();
    assert!(
        plan.to_string()
            .contains(&format!("+ database template_eu_{t}")),
        "{plan}"
    );
    assert!(
        !plan.to_string().contains(&format!("template_main_{t}")),
        "{plan}"
    );
    let report = provisioner
        .apply(&plan, &ApplyOptions::new())
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
    assert!(provisioner.plan().await.unwrap().is_empty());
    // The record names its server, so the router finds it; the catalog is on main.
    assert_eq!(
        s.shared(&format!(
            "SELECT record->>'server' FROM tenants.tenants WHERE id = 'far-{t}'"
        )),
        "eu"
    );
    assert_eq!(
        s.sql(&format!("far_{t}"), "SELECT count(*) FROM widgets"),
        "0"
    );

    let near = s.id("near");
    assert_runtime_silo_listed_on_eu(&s, &provisioner, near).await;
    for id in [s.id("far"), near] {
        destroy(&provisioner, id).await;
    }
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenant_far_{t}_%'"
        )),
        "0"
    );
    for database in [format!("far_{t}"), format!("near_{t}")] {
        assert_eq!(
            s.shared(&format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{database}'"
            )),
            "0"
        );
    }
    provisioner.close().await;
}
