//! What the tenants-as-code tests share: running the `tenants` command in-process,
//! reading its plan, and putting the test cluster back in a known state.

use std::path::Path;

use tenants::provision::Environment;
use tenants_test_support::TestServer;

/// One run of the `tenants` command.
pub(crate) struct Run {
    pub(crate) code: u8,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `tenants <args>` — the code of the binary, in-process — with exactly the
/// variables of `env`, as a pipeline job would.
pub(crate) async fn tenants(env: &Environment, args: &[&str]) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = std::iter::once("tenants").chain(args.iter().copied());
    let code = tenants_cli::execute_with_env(args, env.clone(), &mut out, &mut err).await;
    let run = Run {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{run}");
    run
}

/// The lines of one section (`shared`, `tenant acme`) of a printed plan, trimmed.
pub(crate) fn section<'a>(plan: &'a str, heading: &str) -> Vec<&'a str> {
    plan.lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(str::trim)
        .collect()
}

/// The section headings of a printed plan: `shared`, `tenant acme`, ...
pub(crate) fn headings(plan: &str) -> Vec<&str> {
    plan.lines()
        .take_while(|line| !line.is_empty())
        .filter(|line| !line.starts_with(' '))
        .collect()
}

/// Drops the databases and roles an example creates (examples use fixed names, and
/// roles are cluster-wide), then makes `shared` an empty database again.
pub(crate) fn reset(pg: &TestServer, databases: &[&str], roles: &[String], shared: &str) {
    let admin = pg.admin_url();
    for database in databases.iter().chain([&shared]) {
        pg.psql(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
        );
    }
    pg.psql(admin, &format!("DROP ROLE IF EXISTS {}", roles.join(", ")));
    pg.psql(admin, &format!("CREATE DATABASE \"{shared}\""));
}

/// The group roles of these tenants: `tenant_{id}_admin`, `_developer`, `_customer`.
pub(crate) fn group_roles(ids: &[&str]) -> Vec<String> {
    ids.iter()
        .flat_map(|id| {
            ["admin", "developer", "customer"]
                .map(|kind| format!("tenant_{}_{kind}", id.replace('-', "_")))
        })
        .collect()
}

/// Copies an example directory, to edit it as a branch of the repository would.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
