//! The deployment pipeline of `examples/tenants-as-code/`: its `ci.sh`, run by `sh`
//! with this package's `tenants` binary first on `PATH` — as a CI job runs it —
//! against a real PostgreSQL. (Only this package's tests are given the binary's
//! path; the example's other end-to-end tests are in the workspace's
//! `tests/tenants_as_code.rs`.)
//!
//! The example's names are fixed (databases `tenant_af5042`, ..., roles
//! `tenant_tenant_a_admin`, ...) and roles are cluster-wide, so the test starts by
//! dropping what an earlier run left.

use std::path::Path;
use std::process::Command;

use tenants_test_support::{TestServer, postgres};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/tenants-as-code"
);
const DATABASES: [&str; 3] = ["tenant_af5042", "tenant_f09faf", "tenant_430e00"];
const SHARED: &str = "pipeline_shared";

/// Drops what applying the example creates, and empties the shared database.
fn reset(pg: &TestServer) {
    let admin = pg.admin_url();
    for database in DATABASES.into_iter().chain(["pipeline_template", SHARED]) {
        pg.psql(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
        );
    }
    let mut roles = vec!["pipeline_app".to_owned()];
    for id in ["a", "b", "c"] {
        for kind in ["admin", "developer", "customer"] {
            roles.push(format!("tenant_tenant_{id}_{kind}"));
        }
    }
    pg.psql(admin, &format!("DROP ROLE IF EXISTS {}", roles.join(", ")));
    pg.psql(admin, &format!("CREATE DATABASE \"{SHARED}\""));
}

struct Job {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `sh ci.sh` with only these variables (and `PATH`, the binary first).
fn ci(vars: &[(&str, &str)]) -> Job {
    let bin = Path::new(env!("CARGO_BIN_EXE_tenants"));
    let path = std::env::join_paths(bin.parent().map(Path::to_path_buf).into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let output = Command::new("sh")
        .arg(format!("{EXAMPLE}/ci.sh"))
        .env_clear()
        .env("PATH", path)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let job = Job {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!job.stderr.contains("panicked"), "{job}");
    job
}

#[test]
fn the_ci_script_applies_the_example_and_proves_convergence() {
    let pg = postgres();
    reset(pg);
    let url = pg.url_for(SHARED);
    let secrets = [
        ("DATABASE_URL", url.as_str()),
        ("APP_PASSWORD", "app-secret"),
    ];

    // The first run: plan exits 2, apply runs, the second plan is empty, doctor is clean.
    let job = ci(&secrets);
    assert_eq!(job.code, Some(0), "{job}");
    let steps: Vec<&str> = job
        .stdout
        .lines()
        .filter(|l| l.starts_with("==> "))
        .map(|l| l.split(" -f ").next().unwrap_or(l))
        .collect();
    assert_eq!(
        steps,
        [
            "==> tenants plan",
            "==> tenants apply",
            "==> tenants plan",
            "==> tenants doctor"
        ],
        "{job}"
    );
    for expected in [
        "  + database tenant_af5042 (silo model, copied from template pipeline_template)",
        "  + database tenant_f09faf (silo model, copied from template pipeline_template)",
        "  + database tenant_430e00 (silo model, copied from template pipeline_template)",
        "Plan: 22 to create, 5 to change, 0 to drop.",
        "27 change(s) applied, 3 tenant(s) done",
        "No changes: the servers match the tenants file.",
        "No isolation hazards found.",
    ] {
        assert!(
            job.stdout.lines().any(|l| l == expected),
            "{expected:?} in {job}"
        );
    }
    for database in DATABASES {
        let url = pg.url_for(database);
        assert_eq!(
            pg.psql(&url, "SELECT count(*) FROM _sqlx_migrations WHERE success"),
            "2",
            "{database}"
        );
        assert_eq!(
            pg.psql(&url, "SELECT to_regclass('documents') IS NOT NULL"),
            "t"
        );
    }
    // The application role got the password from the pipeline's secrets.
    let app = pg.url_as("pipeline_app", "app-secret", "tenant_430e00");
    assert_eq!(
        pg.psql(
            &app,
            "SET ROLE tenant_tenant_c_customer; SELECT count(*) FROM documents"
        ),
        "0"
    );

    // The next merge with nothing to change: the gate stops before apply (and the
    // application role's password is needed no more).
    let job = ci(&[("DATABASE_URL", url.as_str())]);
    assert_eq!(job.code, Some(0), "{job}");
    assert!(job.stdout.contains("\n==> nothing to apply\n"), "{job}");
    assert!(!job.stdout.contains("==> tenants apply"), "{job}");

    // A pipeline without its secret: the plan fails, nothing is applied.
    let job = ci(&[]);
    assert_eq!(job.code, Some(1), "{job}");
    assert!(
        job.stderr.contains("DATABASE_URL (URL of server main)"),
        "{job}"
    );
    assert!(
        job.stderr
            .contains("ci: plan failed (exit 1): nothing was applied"),
        "{job}"
    );
}
