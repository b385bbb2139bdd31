//! Reference deployment 4, tenants through the deployment pipeline
//! (`examples/tenants-as-code/`), end to end on PostgreSQL: the example's tenants
//! file, loaded verbatim, goes through the steps of its `ci.sh` — plan gates,
//! apply runs, a second plan proves convergence, doctor finds no hazard — run by the
//! `tenants` command in-process (`tenants_cli::execute_with_env`, the code of the
//! binary), with `DATABASE_URL` pointing at the test cluster.
//!
//! The script itself runs with the real binary in
//! `crates/tenants-cli/tests/pipeline_script.rs`: only that package's tests are
//! given the binary's path. Here it is checked for syntax (`sh -n`) and its gates
//! are run against a stand-in command that exits with chosen codes.
//!
//! The example's names are fixed (databases `tenant_af5042`, ..., roles
//! `tenant_tenant_a_admin`, ...) and roles are cluster-wide, so the tests that apply
//! it take turns, and each starts by dropping what an earlier run left.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, group_roles, headings, section, tenants};
use tenants::provision::{Environment, TenantsFile};
use tenants::{DataModel, TenantId};
use tenants_test_support::{TestServer, postgres};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants-as-code");

/// The tenants, their uids and the databases the file's `tenant_{hash}` gives them.
const TENANTS: [(&str, &str, &str); 3] = [
    (
        "tenant-a",
        "4783eb5d-956e-4b58-a214-790fe7ef61ba",
        "tenant_af5042",
    ),
    (
        "tenant-b",
        "a79a8c37-9d0b-4b1d-a051-ba339eea6f21",
        "tenant_f09faf",
    ),
    (
        "tenant-c",
        "a869f326-7d83-4d1f-8af1-aef8fb11e57f",
        "tenant_430e00",
    ),
];

/// The shared database `DATABASE_URL` names in these tests (and in the script's).
const SHARED: &str = "pipeline_shared";
const APP_PASSWORD: &str = "app-secret";

/// The pipeline's secrets, pointing at the test cluster.
fn pipeline_env(pg: &TestServer) -> Environment {
    Environment::empty()
        .var("DATABASE_URL", pg.url_for(SHARED))
        .var("APP_PASSWORD", APP_PASSWORD)
}

/// Tests that apply the example take turns: its names are cluster-wide.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Drops what applying the example creates, and empties the shared database.
fn reset(pg: &TestServer) {
    let mut roles = group_roles(&TENANTS.map(|(id, _, _)| id));
    roles.push("pipeline_app".into());
    let mut databases = TENANTS.map(|(_, _, db)| db).to_vec();
    databases.push("pipeline_template");
    common::reset(pg, &databases, &roles, SHARED);
}

/// A copy of the example directory to edit, as a branch of the repository would.
fn copy_example() -> PathBuf {
    let to = std::env::temp_dir().join(tenants_test_support::unique_name("tenants_as_code"));
    copy_dir(Path::new(EXAMPLE), &to);
    to
}

#[test]
fn the_example_file_loads_verbatim_with_names_from_templates() {
    let file = TenantsFile::load(Path::new(EXAMPLE).join("tenants.toml")).unwrap();
    assert_eq!(file.servers.len(), 1);
    assert_eq!(file.default_server, "main");
    assert_eq!(file.shared.schemas.len(), 1);
    assert_eq!(file.shared.schemas[0].as_str(), "reference");
    let migrations = file.shared.migrations.as_ref().unwrap();
    assert!(migrations.join("0001_documents.sql").is_file());
    assert_eq!(file.tenants.len(), 3);
    for (spec, (id, uid, database)) in file.tenants.iter().zip(TENANTS) {
        assert_eq!(spec.tenant.id, id.parse::<TenantId>().unwrap());
        assert_eq!(spec.uid.as_deref(), Some(uid));
        // Each tenant references the shared stack through its profile.
        assert_eq!(spec.server, "main");
        assert_eq!(spec.tenant.plan.as_deref(), Some("enterprise"));
        match &spec.tenant.model {
            DataModel::Silo {
                database: name,
                server,
            } => {
                assert_eq!(name.as_str(), database);
                assert_eq!(server.as_deref(), Some("main"));
            }
            other => panic!("{id}: expected a silo tenant, found {other:?}"),
        }
    }
    // The directory loads the same file (its migrations are not tenants files).
    let dir = TenantsFile::load(EXAMPLE).unwrap();
    assert_eq!(dir.tenants.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_plans_applies_and_converges() {
    let _turn = TURN.lock().await;
    let pg = postgres();
    reset(pg);
    let env = pipeline_env(pg);
    let file = format!("{EXAMPLE}/tenants.toml");

    // 1. plan gates: exit 2, changes pending, with the expected diff.
    let plan = tenants(&env, &["plan", "-f", &file]).await;
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(
        headings(&plan.stdout),
        [
            "shared",
            "tenant tenant-a",
            "tenant tenant-b",
            "tenant tenant-c"
        ]
    );
    let shared = section(&plan.stdout, "shared");
    for line in [
        "+ catalog tenants.tenants (where applications read tenant records)",
        "+ role pipeline_app (application login role on server main)",
        "+ schema reference (shared by every tenant)",
        "+ database pipeline_template (template of the silo databases on server main)",
        "~ migrations of template pipeline_template (2 pending: 1, 2)",
    ] {
        assert!(shared.contains(&line), "{line:?} missing from\n{plan}");
    }
    for (id, _, database) in TENANTS {
        let role = |kind: &str| format!("tenant_{}_{kind}", id.replace('-', "_"));
        assert_eq!(
            section(&plan.stdout, &format!("tenant {id}")),
            [
                format!(
                    "+ role {} (admin: SELECT, INSERT, UPDATE, DELETE)",
                    role("admin")
                ),
                format!(
                    "+ role {} (developer: SELECT, INSERT, UPDATE)",
                    role("developer")
                ),
                format!("+ role {} (customer: SELECT)", role("customer")),
                format!(
                    "+ database {database} (silo model, copied from template pipeline_template)"
                ),
                "~ table grants (after migrations)".to_owned(),
                "+ membership of pipeline_app in the tenant roles (so the application may SET ROLE to them)".to_owned(),
                "+ catalog entry".to_owned(),
            ],
            "{plan}"
        );
    }
    assert!(
        plan.stdout
            .contains("Plan: 22 to create, 5 to change, 0 to drop."),
        "{plan}"
    );
    // Planning changed nothing.
    assert_eq!(
        pg.psql(
            pg.admin_url(),
            "SELECT count(*) FROM pg_database \
             WHERE datname IN ('tenant_af5042', 'tenant_f09faf', 'tenant_430e00')"
        ),
        "0"
    );

    // 2. apply runs.
    let apply = tenants(&env, &["apply", "-f", &file]).await;
    assert_eq!(apply.code, 0, "{apply}");
    assert!(
        apply
            .stdout
            .contains("27 change(s) applied, 3 tenant(s) done"),
        "{apply}"
    );

    // 3. a second plan proves convergence.
    let again = tenants(&env, &["plan", "-f", &file]).await;
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(
        again.stdout,
        "No changes: the servers match the tenants file.\n"
    );
    // 4. and doctor finds nothing to fix.
    let doctor = tenants(&env, &["doctor", "-f", &file]).await;
    assert_eq!(doctor.code, 0, "{doctor}");
    let list = tenants(&env, &["list", "-f", &file]).await;
    assert_eq!(list.code, 0, "{list}");
    for (id, _, database) in TENANTS {
        let row = format!("{id}  silo    database {database} on main");
        assert!(
            list.stdout
                .lines()
                .any(|l| l.starts_with(&row) && l.ends_with("ready")),
            "{row:?} in\n{list}"
        );
    }

    // What apply made: a database per tenant, named from its uid, migrated, that
    // only its own roles may enter; its record in the catalog.
    let admin = pg.admin_url();
    let shared_url = pg.url_for(SHARED);
    for (id, _, database) in TENANTS {
        let roles = |kind: &str| format!("tenant_{}_{kind}", id.replace('-', "_"));
        let url = pg.url_for(database);
        assert_eq!(
            pg.psql(&url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations WHERE success"),
            "1,2",
            "{database}"
        );
        assert_eq!(
            pg.psql(&url, "SELECT to_regclass('documents_title') IS NOT NULL"),
            "t"
        );
        assert_eq!(
            pg.psql(
                &url,
                &format!(
                    "SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) \
                     FROM information_schema.role_table_grants \
                     WHERE table_name = 'documents' AND grantee = '{}'",
                    roles("developer")
                )
            ),
            "INSERT,SELECT,UPDATE"
        );
        for (other, _, _) in TENANTS {
            let other_role = format!("tenant_{}_customer", other.replace('-', "_"));
            let may = pg.psql(
                admin,
                &format!("SELECT has_database_privilege('{other_role}', '{database}', 'CONNECT')"),
            );
            assert_eq!(
                may,
                if other == id { "t" } else { "f" },
                "{other_role} on {database}"
            );
        }
        assert_eq!(
            pg.psql(
                &shared_url,
                &format!("SELECT record->>'database' || ' ' || (record->>'plan') FROM tenants.tenants WHERE id = '{id}'")
            ),
            format!("{database} enterprise")
        );
    }
    // The application logs in with the password the pipeline gave, and works as a
    // tenant role in that tenant's database.
    let app = pg.url_as("pipeline_app", APP_PASSWORD, "tenant_af5042");
    assert_eq!(
        pg.psql(
            &app,
            "SET ROLE tenant_tenant_a_admin; \
             INSERT INTO documents (title) VALUES ('roadmap') RETURNING title"
        ),
        "roadmap"
    );
    assert_eq!(
        pg.psql(
            &app,
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ),
        "f"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_flows_through_the_same_pipeline_and_drops_wait_for_a_person() {
    let _turn = TURN.lock().await;
    let pg = postgres();
    reset(pg);
    let env = pipeline_env(pg);
    let dir = copy_example();
    let file = dir.join("tenants.toml");
    let file = file.to_str().unwrap();
    assert_eq!(tenants(&env, &["apply", "-f", file]).await.code, 0);

    // A release adds a migration: the gate sees it for the template and for every
    // tenant, one apply runs it everywhere, and the servers converge again.
    std::fs::write(
        dir.join("migrations/0003_documents_archived.sql"),
        "ALTER TABLE documents ADD COLUMN archived boolean NOT NULL DEFAULT false;",
    )
    .unwrap();
    let plan = tenants(&env, &["plan", "-f", file]).await;
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(
        section(&plan.stdout, "shared"),
        ["~ migrations of template pipeline_template (1 pending: 3)"],
        "{plan}"
    );
    for (id, _, _) in TENANTS {
        assert_eq!(
            section(&plan.stdout, &format!("tenant {id}")),
            [
                "~ migrations (1 pending: 3)",
                "~ table grants (after migrations)"
            ],
            "{plan}"
        );
    }
    let apply = tenants(&env, &["apply", "-f", file]).await;
    assert_eq!(apply.code, 0, "{apply}");
    assert_eq!(tenants(&env, &["plan", "-f", file]).await.code, 0);
    for (_, _, database) in TENANTS {
        assert_eq!(
            pg.psql(
                &pg.url_for(database),
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_name = 'documents' AND column_name = 'archived'"
            ),
            "1",
            "{database}"
        );
    }

    // A merge that removes a tenant: the plan shows the drop, and the pipeline's
    // apply (without --allow-destroy) refuses it; the data stays.
    let text = std::fs::read_to_string(file).unwrap();
    let cut = text.find("[tenants.tenant-c]").unwrap();
    std::fs::write(file, &text[..cut]).unwrap();
    let plan = tenants(&env, &["plan", "-f", file]).await;
    assert_eq!(plan.code, 2, "{plan}");
    assert!(
        section(&plan.stdout, "tenant tenant-c")
            .contains(&"- database tenant_430e00 (and all its data)"),
        "{plan}"
    );
    assert!(
        plan.stdout
            .contains("Drops the data of tenant(s) tenant-c: apply needs --allow-destroy."),
        "{plan}"
    );
    let apply = tenants(&env, &["apply", "-f", file]).await;
    assert_eq!(apply.code, 1, "{apply}");
    assert!(apply.stderr.contains("--allow-destroy"), "{apply}");
    assert_eq!(
        pg.psql(
            pg.admin_url(),
            "SELECT count(*) FROM pg_database WHERE datname = 'tenant_430e00'"
        ),
        "1"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CI script: POSIX sh, and never passes `--allow-destroy`.
#[test]
fn the_ci_script_is_posix_sh_and_never_drops_tenants() {
    let script = format!("{EXAMPLE}/ci.sh");
    let syntax = std::process::Command::new("sh")
        .args(["-n", &script])
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"), "{text}");
    assert!(text.contains("\nset -eu\n"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("--allow-destroy")),
        "the pipeline must never drop tenants by itself"
    );
}

/// The script's gates, against a stand-in `tenants` that exits with chosen codes
/// and logs each call: which exit codes stop the pipeline and which go on. (The
/// script against the real command and PostgreSQL: `crates/tenants-cli/tests`.)
#[test]
fn the_ci_script_gates_on_the_plans_exit_codes() {
    let dir = std::env::temp_dir().join(tenants_test_support::unique_name("ci_gates"));
    std::fs::create_dir_all(&dir).unwrap();
    let stand_in = dir.join("tenants");
    // Exits with the next code of $CODES (one per call), logging its arguments.
    std::fs::write(
        &stand_in,
        "#!/bin/sh\nn=$(($(wc -l < \"$LOG\")))\necho \"$*\" >> \"$LOG\"\n\
         set -- $CODES\n[ \"$n\" -lt \"$#\" ] || exit 0\nshift \"$n\"\nexit \"$1\"\n",
    )
    .unwrap();
    let run = |codes: &str| {
        let log = dir.join(format!("log-{}", codes.replace(' ', "-")));
        std::fs::write(&log, "").unwrap();
        let output = std::process::Command::new("sh")
            .arg(format!("{EXAMPLE}/ci.sh"))
            .env("TENANTS", format!("sh {}", stand_in.display()))
            .env("TENANTS_FILE", "tenants.toml")
            .env("CODES", codes)
            .env("LOG", &log)
            .output()
            .unwrap();
        let calls: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| l.split(" -f ").next().unwrap().to_owned())
            .collect();
        (output.status.code(), calls)
    };
    // Changes pending: apply, converge, doctor.
    assert_eq!(
        run("2 0 0 0"),
        (
            Some(0),
            vec![
                "plan".into(),
                "apply".into(),
                "plan".into(),
                "doctor".into()
            ]
        )
    );
    // Nothing to do: no apply, doctor still looks.
    assert_eq!(run("0 0"), (Some(0), vec!["plan".into(), "doctor".into()]));
    // The plan failed: nothing is applied.
    assert_eq!(run("1"), (Some(1), vec!["plan".into()]));
    // Apply failed: stop there.
    assert_eq!(run("2 1"), (Some(1), vec!["plan".into(), "apply".into()]));
    // Still changes after apply: the servers did not converge.
    assert_eq!(
        run("2 0 2"),
        (Some(1), vec!["plan".into(), "apply".into(), "plan".into()])
    );
    // Doctor found a hazard.
    assert_eq!(run("0 2"), (Some(2), vec!["plan".into(), "doctor".into()]));
    std::fs::remove_dir_all(&dir).unwrap();
}
