//! The `tenants` binary against a real PostgreSQL: exit codes, output, and what each
//! command leaves behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenants_test_support::{TestServer, postgres, tenants_dir, tls_postgres, unique_name};

fn tag() -> String {
    unique_name("c").replace('_', "x")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn tenants(dir: &Path, args: &[&str]) -> Run {
    tenants_with_env(dir, args, &[])
}

fn tenants_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("SHOP_ADMIN_PASSWORD", "admin-secret")
        .env("SHOP_DEV_PASSWORD", "dev-secret")
        .output()
        .unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

struct Setup {
    pg: &'static TestServer,
    url: String,
    tag: String,
    dir: PathBuf,
}

impl Setup {
    fn new() -> Self {
        Setup::on(postgres())
    }

    fn on(pg: &'static TestServer) -> Self {
        let url = pg.fresh_database();
        let tag = tag();
        let orders = "CREATE TABLE orders (id serial, tenant_id text NOT NULL DEFAULT \
                      current_setting('tenants.tenant_id', true), item text, \
                      PRIMARY KEY (tenant_id, id));";
        let dir = tenants_dir("tenants-cli", &tag, ("0001_orders.sql", orders));
        let setup = Setup { pg, url, tag, dir };
        setup.write("");
        setup
    }

    fn write(&self, extra: &str) {
        let t = &self.tag;
        let text = format!(
            r#"[servers.main]
url = "{url}"
app_role = "app_{t}"
template = "template_{t}"

[shared]
migrations = "migrations"
pool_tables = ["orders"]

[tenants.shop-{t}]
name = "Shop"
model = "silo"
database = "shop_{t}"
  [[tenants.shop-{t}.users]]
  name = "admin_{t}"
  role = "admin"
  password_env = "SHOP_ADMIN_PASSWORD"
  [[tenants.shop-{t}.users]]
  name = "dev_{t}"
  role = "developer"
  password_env = "SHOP_DEV_PASSWORD"

[tenants.store-{t}]
name = "Store"
model = "bridge"
schema = "store_{t}"
{extra}"#,
            url = self.url
        );
        std::fs::write(self.dir.join("tenants.toml"), text).unwrap();
    }

    fn run(&self, args: &[&str]) -> Run {
        tenants(&self.dir, args)
    }

    fn shared(&self, sql: &str) -> String {
        self.pg.psql(&self.url, sql)
    }
}

#[test]
fn plan_apply_plan_converges_with_terraform_exit_codes() {
    let s = Setup::new();
    let t = &s.tag;
    let plan = s.run(&["plan", "-f", "tenants.toml"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!("+ database shop_{t}")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!("+ user dev_{t}")),
        "{}",
        plan.stdout
    );

    let apply = s.run(&["apply", "-f", "tenants.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("2 tenant(s) done"),
        "{}",
        apply.stdout
    );

    let again = s.run(&["plan", "-f", "tenants.toml"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    let apply = s.run(&["apply", "-f", "tenants.toml"]);
    assert_eq!(apply.code, 0);
    assert!(apply.stdout.contains("No changes"), "{}", apply.stdout);

    // Editing the file: a new tenant and a renamed one.
    s.write(&format!("\n[tenants.more-{t}]\nmodel = \"pool\"\n"));
    let text = std::fs::read_to_string(s.dir.join("tenants.toml"))
        .unwrap()
        .replace("name = \"Store\"", "name = \"Store Ltd\"");
    std::fs::write(s.dir.join("tenants.toml"), text).unwrap();
    let plan = s.run(&["plan", "-f", "tenants.toml"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    let expected = format!("tenant more-{t}\n  + role tenant_more_{t}_admin");
    assert!(plan.stdout.contains(&expected), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!(
            "tenant store-{t}\n  ~ catalog entry (changed: name)"
        )),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains(&format!("tenant shop-{t}")),
        "{}",
        plan.stdout
    );

    let list = s.run(&["list", "-f", "tenants.toml"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stdout.contains(&format!("shop-{t}")) && list.stdout.contains("ready"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("change(s) pending"), "{}", list.stdout);
}

#[test]
fn the_cli_reaches_a_tls_only_server_through_url_and_url_env() {
    let s = Setup::on(tls_postgres());
    assert!(s.url.contains("sslmode=verify-full"), "{}", s.url);
    let apply = s.run(&["apply", "-f", "tenants.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let text = std::fs::read_to_string(s.dir.join("tenants.toml"))
        .unwrap()
        .replace(
            &format!("url = \"{}\"", s.url),
            "url_env = \"TLS_DATABASE_URL\"",
        );
    std::fs::write(s.dir.join("tenants.toml"), text).unwrap();
    let plan = tenants_with_env(
        &s.dir,
        &["plan", "-f", "tenants.toml"],
        &[("TLS_DATABASE_URL", &s.url)],
    );
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    // The same server without TLS is refused by its pg_hba.conf, with the reason.
    let plain = s.url.replace("sslmode=verify-full", "sslmode=disable");
    let refused = tenants_with_env(
        &s.dir,
        &["plan", "-f", "tenants.toml"],
        &[("TLS_DATABASE_URL", &plain)],
    );
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("no encryption"),
        "{}",
        refused.stderr
    );
}

#[test]
fn destroy_needs_the_matching_confirmation_and_apply_needs_allow_destroy() {
    let s = Setup::new();
    let t = &s.tag;
    assert_eq!(s.run(&["apply", "-f", "tenants.toml"]).code, 0);
    let store = format!("store-{t}");
    let exists = || {
        s.shared(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'store_{t}'"
        ))
    };

    let shown = s.run(&["destroy", "-f", "tenants.toml", &store]);
    assert_eq!(shown.code, 2, "{}{}", shown.stdout, shown.stderr);
    assert!(
        shown.stdout.contains(&format!("- schema store_{t}")),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("Nothing was dropped"),
        "{}",
        shown.stdout
    );
    assert_eq!(exists(), "1");

    let wrong = s.run(&[
        "destroy",
        "-f",
        "tenants.toml",
        &store,
        "--confirm",
        "other",
    ]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("does not match"), "{}", wrong.stderr);
    assert_eq!(exists(), "1");

    // Removed from the file: plan shows the drop, apply refuses it.
    s.write("");
    let text = std::fs::read_to_string(s.dir.join("tenants.toml")).unwrap();
    let cut = text.find(&format!("[tenants.store-{t}]")).unwrap();
    std::fs::write(s.dir.join("tenants.toml"), &text[..cut]).unwrap();
    let plan = s.run(&["plan", "-f", "tenants.toml"]);
    assert_eq!(plan.code, 2);
    assert!(
        plan.stdout
            .contains(&format!("- schema store_{t} (and all its data)")),
        "{}",
        plan.stdout
    );
    let refused = s.run(&["apply", "-f", "tenants.toml"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("--allow-destroy"),
        "{}",
        refused.stderr
    );
    assert_eq!(exists(), "1");

    let confirmed = s.run(&["destroy", "-f", "tenants.toml", &store, "--confirm", &store]);
    assert_eq!(
        confirmed.code, 0,
        "{}{}",
        confirmed.stdout, confirmed.stderr
    );
    assert_eq!(exists(), "0");
    assert_eq!(s.run(&["plan", "-f", "tenants.toml"]).code, 0);
}

#[test]
fn doctor_exits_non_zero_on_hazards() {
    let s = Setup::new();
    let t = &s.tag;
    let before = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(before.code, 2, "{}", before.stdout);
    assert!(
        before.stdout.contains("missing in the database"),
        "{}",
        before.stdout
    );
    assert_eq!(s.run(&["apply", "-f", "tenants.toml"]).code, 0);
    let clean = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(clean.code, 0, "{}", clean.stdout);

    s.shared("ALTER TABLE orders DISABLE ROW LEVEL SECURITY");
    s.shared(&format!("ALTER ROLE app_{t} BYPASSRLS"));
    let found = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(found.code, 2, "{}", found.stdout);
    assert!(
        found
            .stdout
            .contains("public.orders has row-level security disabled"),
        "{}",
        found.stdout
    );
    assert!(
        found
            .stdout
            .contains(&format!("role app_{t} has BYPASSRLS")),
        "{}",
        found.stdout
    );
    s.shared(&format!("ALTER ROLE app_{t} NOBYPASSRLS"));

    // A hand-written policy that lets rows through when no tenant is set.
    s.shared(
        "ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
         CREATE POLICY open_when_unset ON orders
             USING (current_setting('tenants.tenant_id', true) IS NULL)",
    );
    let found = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(found.code, 2, "{}", found.stdout);
    assert!(
        found.stdout.contains(
            "policy open_when_unset on pool table public.orders lets rows through when no tenant is set"
        ),
        "{}",
        found.stdout
    );
    s.shared("DROP POLICY open_when_unset ON orders");

    // Objects a superuser's migration creates over a pool table read it past RLS.
    s.shared(
        "CREATE MATERIALIZED VIEW order_count AS SELECT count(*) FROM orders;
         CREATE FUNCTION all_orders() RETURNS bigint SECURITY DEFINER LANGUAGE sql
             AS 'SELECT count(*) FROM orders'",
    );
    let found = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(found.code, 2, "{}", found.stdout);
    for says in [
        "materialized view public.order_count",
        "SECURITY DEFINER function all_orders()",
    ] {
        assert!(found.stdout.contains(says), "{says}: {}", found.stdout);
    }
    s.shared("DROP MATERIALIZED VIEW order_count; DROP FUNCTION all_orders()");
    let clean = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(clean.code, 0, "{}", clean.stdout);
}

/// A shared migration that moves the search path is refused at plan, before
/// anything runs, naming the file, the line and the reason; a bridge tenant's
/// missing schema is a failure of migrate, not a silent skip.
#[test]
fn bridge_migrations_are_checked_and_missing_schemas_fail_migrate() {
    let s = Setup::new();
    let t = &s.tag;
    let migration = s.dir.join("migrations/0002_totals.sql");
    std::fs::write(
        &migration,
        "CREATE TABLE totals (n int);\nSET search_path = public;\nCREATE TABLE more (n int);",
    )
    .unwrap();
    let plan = s.run(&["plan", "-f", "tenants.toml"]);
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stderr
            .contains("migrations/0002_totals.sql:2: sets search_path"),
        "{}",
        plan.stderr
    );
    std::fs::remove_file(&migration).unwrap();

    assert_eq!(s.run(&["apply", "-f", "tenants.toml"]).code, 0);
    s.shared(&format!("DROP SCHEMA store_{t} CASCADE"));
    let migrate = s.run(&["migrate", "-f", "tenants.toml"]);
    assert_eq!(migrate.code, 1, "{}{}", migrate.stdout, migrate.stderr);
    let all = format!("{}{}", migrate.stdout, migrate.stderr);
    assert!(
        all.contains(&format!(
            "tenant store-{t} is not provisioned (schema store_{t}"
        )),
        "{all}"
    );
}

/// A unique key of a pool table that does not lead with tenant_id: plan refuses
/// it (exit 1, the table and the key), doctor names it (exit 2).
#[test]
fn pool_table_keys_without_tenant_id_are_refused() {
    let s = Setup::new();
    assert_eq!(s.run(&["apply", "-f", "tenants.toml"]).code, 0);
    s.shared("CREATE UNIQUE INDEX orders_item ON orders (item)");
    let plan = s.run(&["plan", "-f", "tenants.toml"]);
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stderr
            .contains("public.orders: unique index orders_item (item)"),
        "{}",
        plan.stderr
    );
    let doctor = s.run(&["doctor", "-f", "tenants.toml"]);
    assert_eq!(doctor.code, 2, "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains("does not lead with tenant_id"),
        "{}",
        doctor.stdout
    );
    s.shared("DROP INDEX orders_item");
    assert_eq!(s.run(&["plan", "-f", "tenants.toml"]).code, 0);
}

#[test]
fn errors_are_one_clean_message_with_exit_code_one() {
    let dir = std::env::temp_dir().join(format!("tenants-cli-errors-{}", tag()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        "[servers.main]\nurl_env = \"X\"\n\n[tenants.a]\nmodel = \"pool\"\nstatus = \"active\"\ncolour = 1\n",
    )
    .unwrap();
    let bad = tenants(&dir, &["plan", "-f", "bad.toml"]);
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr.trim(),
        "error: bad.toml:7:1: unknown field `colour`, expected one of `uid`, `name`, `profile`, \
         `model`, `schema`, `database`, `server`, `plan`, `status`, `parent`, `domains`, \
         `options`, `users`"
    );

    std::fs::write(
        dir.join("env.toml"),
        "[servers.main]\nurl_env = \"TENANTS_CLI_TEST_UNSET\"\n",
    )
    .unwrap();
    let missing = tenants(&dir, &["apply", "-f", "env.toml"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("TENANTS_CLI_TEST_UNSET (URL of server main)"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("nothing was changed"),
        "{}",
        missing.stderr
    );

    let absent = tenants(&dir, &["plan", "-f", "nope.toml"]);
    assert_eq!(absent.code, 1);
    assert!(
        absent.stderr.starts_with("error: nope.toml: cannot read"),
        "{}",
        absent.stderr
    );

    // Tenant ids and names are checked as the arguments are read, before any file.
    let bad_id = tenants(&dir, &["destroy", "-f", "nope.toml", "A B"]);
    assert_eq!(bad_id.code, 1);
    assert!(
        bad_id
            .stderr
            .starts_with("error: invalid value 'A B' for '<TENANT>': invalid tenant id"),
        "{}",
        bad_id.stderr
    );
    let bad_name = tenants(
        &dir,
        &[
            "move",
            "-f",
            "nope.toml",
            "acme",
            "--to",
            "silo",
            "--database",
            "bad name",
        ],
    );
    assert_eq!(bad_name.code, 1);
    assert!(
        bad_name
            .stderr
            .starts_with("error: invalid value 'bad name' for '--database <NAME>'")
            && bad_name.stderr.contains("not a safe SQL identifier"),
        "{}",
        bad_name.stderr
    );

    // A move goes to a model or to a Citus node: one of them, never both.
    let nowhere = tenants(&dir, &["move", "-f", "nope.toml", "acme"]);
    assert_eq!(nowhere.code, 1);
    assert!(nowhere.stderr.contains("--to <TO>"), "{}", nowhere.stderr);
    let both = [
        "move",
        "-f",
        "nope.toml",
        "acme",
        "--to",
        "silo",
        "--to-node",
        "w:5432",
    ];
    let both = tenants(&dir, &both);
    assert_eq!(both.code, 1);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );

    let usage = tenants(&dir, &["plan"]);
    assert_eq!(
        usage.code, 1,
        "usage errors are errors, never 'changes pending'"
    );
    assert!(usage.stderr.contains("--file"), "{}", usage.stderr);
    assert_eq!(tenants(&dir, &["--help"]).code, 0);
}

#[test]
fn move_takes_a_runtime_tenant_out_of_the_pool_and_refuses_the_rest() {
    let s = Setup::new();
    let t = &s.tag;
    s.write(&format!("\n[tenants.pool-{t}]\nmodel = \"pool\"\n"));
    assert_eq!(s.run(&["apply", "-f", "tenants.toml"]).code, 0);
    // A tenant an application registered at runtime, with rows in the pool.
    s.shared(&format!(
        "INSERT INTO tenants.tenants (id, record) VALUES ('app-{t}', '{{\"id\": \"app-{t}\", \"model\": \"pool\"}}'); \
         INSERT INTO orders (tenant_id, item) VALUES ('app-{t}', 'nut'), ('app-{t}', 'bolt'), ('pool-{t}', 'gear')"
    ));

    let moved = s.run(&[
        "move",
        "-f",
        "tenants.toml",
        &format!("app-{t}"),
        "--to",
        "bridge",
    ]);
    assert_eq!(moved.code, 0, "{}{}", moved.stdout, moved.stderr);
    assert!(
        moved
            .stdout
            .contains(&format!("lives in schema app_{t} now")),
        "{}",
        moved.stdout
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT string_agg(item, ',' ORDER BY id) FROM app_{t}.orders"
        )),
        "nut,bolt"
    );
    assert_eq!(
        s.shared("SELECT string_agg(tenant_id || ':' || item, ',') FROM public.orders"),
        format!("pool-{t}:gear")
    );
    assert_eq!(
        s.shared(&format!(
            "SELECT record ->> 'model' FROM tenants.tenants WHERE id = 'app-{t}'"
        )),
        "bridge"
    );

    let no_citus = [
        "move",
        "-f",
        "tenants.toml",
        &format!("pool-{t}"),
        "--to-node",
        "w:5432",
    ];
    let no_citus = s.run(&no_citus);
    assert_eq!(no_citus.code, 1);
    assert!(
        no_citus.stderr.contains("is not declared citus = true"),
        "{}",
        no_citus.stderr
    );
    for (tenant, refusal) in [
        (format!("nobody-{t}"), "not in the catalog"),
        (format!("store-{t}"), "only tenants in the pool"),
        (format!("pool-{t}"), "write its new model there"),
    ] {
        let refused = s.run(&["move", "-f", "tenants.toml", &tenant, "--to", "silo"]);
        assert_eq!(refused.code, 1, "{tenant}: {}", refused.stdout);
        assert!(
            refused.stderr.contains(refusal),
            "{tenant}: {}",
            refused.stderr
        );
    }
    assert_eq!(
        s.shared(&format!(
            "SELECT count(*) FROM public.orders WHERE tenant_id = 'pool-{t}'"
        )),
        "1",
        "refused moves change nothing"
    );
}
