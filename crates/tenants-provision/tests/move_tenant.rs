//! Moving a tenant out of the pool against a real PostgreSQL: its rows go with its
//! record and nowhere else, an interrupted move resumes, a file's model change is
//! planned as the same move, and every instance hears of it as a `TenantEvent`.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tenants_core::{DataModel, SqlIdent, Tenant, TenantCatalog, TenantId, TenantStatus};
use tenants_db::{Error, PgCatalog, Sqlx, TenantEvent, TenantRole, TenantRouter};
use tenants_provision::{ApplyOptions, Provisioner, TenantSpec, TenantsFile};
use tenants_test_support::{TestServer, postgres, tenants_dir, unique_name};
use tokio::task::JoinHandle;

const MIGRATION: &str = "
CREATE TABLE todos (id bigserial, tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true), title text NOT NULL,
    PRIMARY KEY (tenant_id, id));
CREATE TABLE notes (id integer GENERATED ALWAYS AS IDENTITY, tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true), body text,
    PRIMARY KEY (tenant_id, id));
CREATE INDEX todos_by_tenant ON todos (tenant_id, id);
";

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
        let tag = unique_name("m").replace('_', "x");
        let dir = tenants_dir("tenants-move", &tag, ("0001_todos.sql", MIGRATION));
        Setup { pg, url, tag, dir }
    }

    fn file(&self, tenants: &str) -> TenantsFile {
        let t = &self.tag;
        let text = format!(
            r#"
[servers.main]
url = "{url}"
app_role = "app_{t}"
template = "template_{t}"

[shared]
migrations = "migrations"
pool_tables = ["todos", "notes"]
{tenants}"#,
            url = self.url
        );
        let path = self.dir.join("tenants.toml");
        std::fs::write(&path, text).unwrap();
        TenantsFile::load(&path).unwrap()
    }

    async fn provisioner(&self, tenants: &str) -> Provisioner {
        let provisioner = Provisioner::connect(self.file(tenants)).await.unwrap();
        common::apply_all(&provisioner).await;
        provisioner
    }

    fn id(&self, name: &str) -> TenantId {
        format!("{name}-{}", self.tag).parse().unwrap()
    }

    fn silo(&self, name: &str) -> DataModel {
        DataModel::Silo {
            database: SqlIdent::new(format!("{name}_{}", self.tag)).unwrap(),
            server: None,
        }
    }

    fn shared(&self, sql: &str) -> String {
        self.pg.psql(&self.url, sql)
    }

    fn in_database(&self, database: &str, sql: &str) -> String {
        self.pg.psql(&self.pg.url_for(database), sql)
    }

    fn router(&self) -> TenantRouter<Sqlx> {
        let database = self.url.rsplit('/').next().unwrap();
        let app = format!("app_{}", self.tag);
        TenantRouter::<Sqlx>::builder()
            .server("main", self.pg.url_as(&app, "unused", database))
            .build()
            .unwrap()
    }

    async fn catalog(&self) -> PgCatalog {
        PgCatalog::new(PgPool::connect(&self.url).await.unwrap())
    }
}

async fn record(catalog: &PgCatalog, id: TenantId) -> Tenant {
    (*catalog.get(id).await.unwrap().unwrap()).clone()
}

async fn add(router: &TenantRouter<Sqlx>, tenant: &Tenant, title: &str) -> i64 {
    let mut tx = router.begin_as(tenant, TenantRole::Admin).await.unwrap();
    let id: i64 = sqlx::query_scalar("INSERT INTO todos (title) VALUES ($1) RETURNING id")
        .bind(title)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ($1)")
        .bind(title)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn titles(router: &TenantRouter<Sqlx>, tenant: &Tenant) -> Vec<String> {
    let mut tx = router.begin_as(tenant, TenantRole::Admin).await.unwrap();
    let titles = sqlx::query_scalar("SELECT title FROM todos ORDER BY id")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    titles
}

/// Every tenant event a subscriber has heard so far.
type Heard = Arc<Mutex<Vec<TenantEvent>>>;

/// Subscribes to the catalog's tenant events: what it heard, and its task.
async fn listen(catalog: &PgCatalog) -> (Heard, JoinHandle<()>) {
    let heard = Heard::default();
    let listener = {
        let heard = heard.clone();
        PgCatalog::subscribe(catalog.pool(), move |event| {
            heard.lock().unwrap().push(event)
        })
        .await
        .unwrap()
    };
    (heard, listener)
}

async fn provision_in_the_pool(provisioner: &Provisioner, ids: [TenantId; 2]) {
    for id in ids {
        let spec = TenantSpec::new(Tenant::new(id, DataModel::Pool));
        provisioner.provision(&spec).await.unwrap();
    }
}

/// The shared tables hold none of a's rows, and b's rows only.
fn assert_the_pool_keeps_only_bs_rows(s: &Setup) {
    let t = &s.tag;
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM todos WHERE tenant_id = 'a-{t}'"
        )),
        "0"
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM notes WHERE tenant_id = 'a-{t}'"
        )),
        "0"
    );
    assert_eq!(s.shared("SELECT string_agg(title, ',') FROM todos"), "b1");
}

/// The new database holds exactly a's rows, still tagged and under the policy.
fn assert_as_database_holds_exactly_its_rows(s: &Setup) {
    let t = &s.tag;
    let database = format!("a_{t}");
    assert_eq!(
        s.in_database(
            &database,
            "SELECT string_agg(tenant_id || ':' || title, ',' ORDER BY id) FROM todos"
        ),
        format!("a-{t}:a1,a-{t}:a2,a-{t}:a3")
    );
    assert_eq!(s.in_database(&database, "SELECT count(*) FROM notes"), "3");
    assert_eq!(
        s.in_database(
            &database,
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'todos'"
        ),
        "t"
    );
}

/// A transaction begun with the old record finds a's privileges on the shared
/// tables gone, instead of writing rows nobody would read.
async fn assert_a_stale_record_cannot_write_to_the_pool(
    router: &TenantRouter<Sqlx>,
    pooled_a: &Tenant,
) {
    let mut stale = router.begin_as(pooled_a, TenantRole::Admin).await.unwrap();
    let refused = sqlx::query("INSERT INTO todos (title) VALUES ('lost')")
        .execute(&mut *stale)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
}

/// Moving tenant `b` into a's database is refused before anything runs.
async fn assert_a_move_into_as_database_is_refused(
    s: &Setup,
    provisioner: &Provisioner,
    b: TenantId,
) {
    let t = &s.tag;
    let clash = provisioner.move_tenant(b, s.silo("a")).await.unwrap_err();
    assert!(
        matches!(&clash, Error::Config(m)
            if m.contains(&format!("database a_{t} is tenant a-{t}'s"))
                && m.contains("nothing was changed")),
        "{clash}"
    );
}

/// Suspends tenant `id` through the catalog and waits (at most 5 s) for the
/// subscriber to hear of it: the event it waited for.
async fn suspend_and_wait_to_hear(catalog: &PgCatalog, heard: &Heard, id: TenantId) -> TenantEvent {
    catalog
        .put(
            &record(catalog, id)
                .await
                .with_status(TenantStatus::Suspended),
        )
        .await
        .unwrap();
    let wanted = TenantEvent::StatusChanged {
        tenant: id,
        from: TenantStatus::Active,
        to: TenantStatus::Suspended,
    };
    for _ in 0..200 {
        if heard.lock().unwrap().contains(&wanted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    wanted
}

/// The subscriber heard a and b created in the pool, a moved to its silo, and `last`.
fn assert_heard_every_change(s: &Setup, heard: &Heard, [a, b]: [TenantId; 2], last: TenantEvent) {
    let heard = heard.lock().unwrap().clone();
    for event in [
        TenantEvent::Created {
            tenant: a,
            model: DataModel::Pool,
        },
        TenantEvent::Created {
            tenant: b,
            model: DataModel::Pool,
        },
        TenantEvent::Moved {
            tenant: a,
            from: DataModel::Pool,
            to: s.silo("a"),
        },
        last,
    ] {
        assert!(heard.contains(&event), "{event:?} not in {heard:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_tenant_moves_to_its_own_database_with_its_rows_and_only_them() {
    let s = Setup::new();
    let provisioner = s.provisioner("").await;
    let catalog = s.catalog().await;
    let (heard, listener) = listen(&catalog).await;
    let (a, b) = (s.id("a"), s.id("b"));
    provision_in_the_pool(&provisioner, [a, b]).await;
    let router = s.router();
    let pooled_a = record(&catalog, a).await;
    let pooled_b = record(&catalog, b).await;
    let mut last = 0;
    for title in ["a1", "a2", "a3"] {
        last = add(&router, &pooled_a, title).await;
    }
    add(&router, &pooled_b, "b1").await;

    provisioner.move_tenant(a, s.silo("a")).await.unwrap();

    let moved = record(&catalog, a).await;
    assert_eq!(moved.model, s.silo("a"));
    assert_the_pool_keeps_only_bs_rows(&s);
    assert_as_database_holds_exactly_its_rows(&s);
    // The same code serves it from there; new ids follow the copied ones.
    assert_eq!(titles(&router, &moved).await, ["a1", "a2", "a3"]);
    assert!(add(&router, &moved, "a4").await > last);
    assert_eq!(titles(&router, &pooled_b).await, ["b1"]);
    assert_a_stale_record_cannot_write_to_the_pool(&router, &pooled_a).await;

    // Moving again changes nothing.
    provisioner.move_tenant(a, s.silo("a")).await.unwrap();
    assert_eq!(titles(&router, &moved).await, ["a1", "a2", "a3", "a4"]);

    // b cannot move into a's database, and nothing moves into the pool.
    // Refused before anything runs: a's rows stay in its database (a move empties
    // its target's tables first), and b stays in the pool.
    assert_a_move_into_as_database_is_refused(&s, &provisioner, b).await;
    assert_eq!(titles(&router, &moved).await, ["a1", "a2", "a3", "a4"]);
    assert_eq!(record(&catalog, b).await.model, DataModel::Pool);
    let into_pool = provisioner
        .move_tenant(a, DataModel::Pool)
        .await
        .unwrap_err();
    assert!(
        into_pool.to_string().contains("only tenants in the pool"),
        "{into_pool}"
    );
    assert_eq!(titles(&router, &pooled_b).await, ["b1"]);

    // Every change reached the subscriber, the move included.
    let suspended = suspend_and_wait_to_hear(&catalog, &heard, b).await;
    assert_heard_every_change(&s, &heard, [a, b], suspended);
    listener.abort();
    router.close().await;
    provisioner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_leaves_the_tenant_in_the_pool_and_resumes() {
    let s = Setup::new();
    let provisioner = s.provisioner("").await;
    let catalog = s.catalog().await;
    let a = s.id("a");
    provisioner
        .provision(&TenantSpec::new(Tenant::new(a, DataModel::Pool)))
        .await
        .unwrap();
    let router = s.router();
    let pooled = record(&catalog, a).await;
    add(&router, &pooled, "before").await;

    // The switch of the record fails after the rows were copied.
    s.shared(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'interrupted'; END $$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON tenants.tenants FOR EACH ROW EXECUTE FUNCTION refuse()",
    );
    let failed = provisioner.move_tenant(a, s.silo("a")).await.unwrap_err();
    assert!(failed.to_string().contains("interrupted"), "{failed}");
    let t = &s.tag;
    let database = format!("a_{t}");
    assert_eq!(
        s.in_database(&database, "SELECT count(*) FROM todos"),
        "1",
        "the copy reached the new database"
    );
    // The tenant still lives in the pool, with its rows, and keeps working.
    assert_eq!(record(&catalog, a).await.model, DataModel::Pool);
    add(&router, &pooled, "meanwhile").await;
    assert_eq!(titles(&router, &pooled).await, ["before", "meanwhile"]);

    s.shared("DROP TRIGGER refuse ON tenants.tenants");
    provisioner.move_tenant(a, s.silo("a")).await.unwrap();
    let moved = record(&catalog, a).await;
    assert_eq!(moved.model, s.silo("a"));
    assert_eq!(
        titles(&router, &moved).await,
        ["before", "meanwhile"],
        "copied again from scratch, once"
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM todos WHERE tenant_id = 'a-{t}'"
        )),
        "0"
    );
    router.close().await;
    provisioner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_change_in_the_file_is_planned_and_applied_as_the_same_move() {
    let s = Setup::new();
    let t = s.tag.clone();
    let pool = format!("[tenants.c-{t}]\nmodel = \"pool\"\n");
    let provisioner = s.provisioner(&pool).await;
    let catalog = s.catalog().await;
    let c = s.id("c");
    let router = s.router();
    add(&router, &record(&catalog, c).await, "c1").await;

    let refused = provisioner.move_tenant(c, s.silo("c")).await.unwrap_err();
    assert!(
        refused.to_string().contains("write its new model there"),
        "{refused}"
    );

    let silo = format!("[tenants.c-{t}]\nmodel = \"silo\"\ndatabase = \"c_{t}\"\n");
    let edited = Provisioner::connect(s.file(&silo)).await.unwrap();
    let plan = edited.plan().await.unwrap();
    let shown = plan.to_string();
    assert!(
        shown.contains(&format!("+ database c_{t}"))
            && shown.contains(
                "~ model (pool → silo: copies its rows of public.todos, public.notes there"
            ),
        "{shown}"
    );
    let report = edited.apply(&plan, &ApplyOptions::new()).await.unwrap();
    assert!(report.is_success(), "{report}");
    let moved = record(&catalog, c).await;
    assert_eq!(moved.model, s.silo("c"));
    assert_eq!(titles(&router, &moved).await, ["c1"]);
    assert!(edited.plan().await.unwrap().is_empty(), "converged");
    router.close().await;
    provisioner.close().await;
    edited.close().await;
}
