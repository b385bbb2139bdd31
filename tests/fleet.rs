//! Reference deployment 5, a fleet repository for many teams (`examples/fleet/`),
//! end to end on PostgreSQL through the `tenants` command (in-process,
//! `tenants_cli::execute_with_env`): the team directories merge under the platform's
//! file; onboarding a tenant is one new file (the one `examples/fleet/README.md`
//! shows) and one apply; a team file that touches another tenant's objects is
//! refused, naming the file, the line and the reason, before any connection.
//!
//! The example's names are fixed and roles are cluster-wide, so the tests that apply
//! it take turns, and each starts by dropping what an earlier run left.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, group_roles, headings, section, tenants};
use tenants::DataModel;
use tenants::provision::{Environment, TenantsFile};
use tenants_test_support::{TestServer, postgres};

const FLEET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fleet");
const SHARED: &str = "fleet_shared";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Drops what applying the fleet (and onboarding initech) creates.
fn reset(pg: &TestServer) {
    let mut roles = group_roles(&["acme", "acme-eu", "globex", "initech"]);
    roles.extend(["fleet_app".into(), "acme_reporting".into()]);
    common::reset(pg, &["fleet_acme_eu", "fleet_template"], &roles, SHARED);
}

fn fleet_env(pg: &TestServer) -> Environment {
    Environment::empty()
        .var("DATABASE_URL", pg.url_for(SHARED))
        .var("ACME_REPORTING_PASSWORD", "reporting-secret")
}

/// A checkout of the fleet repository, to add files to.
fn checkout() -> PathBuf {
    let to = std::env::temp_dir().join(tenants_test_support::unique_name("fleet"));
    copy_dir(Path::new(FLEET), &to);
    to
}

/// The onboarding file the README shows: the code block that opens with
/// `# examples/fleet/initech/tenants.toml`.
fn readme_onboarding_file() -> String {
    let readme = std::fs::read_to_string(format!("{FLEET}/README.md")).unwrap();
    let start = readme
        .find("```toml\n# examples/fleet/initech/tenants.toml\n")
        .expect("the README shows initech's file")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_owned()
}

#[test]
fn the_fleet_merges_one_directory_per_team() {
    let file = TenantsFile::load(FLEET).unwrap();
    let tenants: Vec<(&str, &str)> = file
        .tenants
        .iter()
        .map(|t| {
            let origin = t.origin.strip_prefix(FLEET).unwrap();
            (t.tenant.id.as_str(), origin)
        })
        .collect();
    assert_eq!(
        tenants,
        [
            ("acme", "/acme/tenants.toml"),
            ("acme-eu", "/acme/tenants.toml"),
            ("globex", "/globex/tenants.toml"),
        ]
    );
    // The platform's profiles place each team's tenants and name their objects.
    let [acme, acme_eu, globex] = &file.tenants[..] else {
        unreachable!()
    };
    assert!(
        matches!(&acme.tenant.model, DataModel::Bridge { schema } if schema.as_str() == "t_acme")
    );
    assert_eq!(acme.tenant.plan.as_deref(), Some("standard"));
    assert_eq!(acme.users[0].name.as_str(), "acme_reporting");
    assert!(matches!(
        &acme_eu.tenant.model,
        DataModel::Silo { database, server: Some(server) }
            if database.as_str() == "fleet_acme_eu" && server == "main"
    ));
    assert_eq!(acme_eu.tenant.parent.unwrap().as_str(), "acme");
    assert_eq!(acme_eu.tenant.options["residency"]["region"], "eu-west");
    assert_eq!(globex.tenant.model, DataModel::Pool);
    assert_eq!(globex.tenant.plan.as_deref(), Some("free"));
    // The platform's file holds the shared stack.
    assert_eq!(file.shared.pool_tables[0].to_string(), "public.projects");
    assert!(file.servers["main"].app_role.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_a_tenant_is_one_new_file_and_one_apply() {
    let _turn = TURN.lock().await;
    let pg = postgres();
    reset(pg);
    let env = fleet_env(pg);
    let repo = checkout();
    let dir = repo.to_str().unwrap();

    let plan = tenants(&env, &["plan", "-f", dir]).await;
    assert_eq!(plan.code, 2, "{plan}");
    assert_eq!(
        headings(&plan.stdout),
        ["shared", "tenant acme", "tenant acme-eu", "tenant globex"]
    );
    let apply = tenants(&env, &["apply", "-f", dir]).await;
    assert_eq!(apply.code, 0, "{apply}");
    assert!(apply.stdout.contains("3 tenant(s) done"), "{apply}");
    assert_eq!(tenants(&env, &["plan", "-f", dir]).await.code, 0);

    // Team initech's pull request: one new file.
    std::fs::create_dir(repo.join("initech")).unwrap();
    std::fs::write(repo.join("initech/tenants.toml"), readme_onboarding_file()).unwrap();
    let plan = tenants(&env, &["plan", "-f", dir]).await;
    assert_eq!(plan.code, 2, "{plan}");
    // Its plan is initech's changes and nothing else: what the README shows.
    assert_eq!(headings(&plan.stdout), ["tenant initech"], "{plan}");
    assert_eq!(
        section(&plan.stdout, "tenant initech"),
        [
            "+ role tenant_initech_admin (admin: SELECT, INSERT, UPDATE, DELETE)",
            "+ role tenant_initech_developer (developer: SELECT, INSERT, UPDATE)",
            "+ role tenant_initech_customer (customer: SELECT)",
            "+ schema t_initech (bridge model, in the shared database)",
            "~ migrations (1 pending: 1)",
            "~ table grants (after migrations)",
            "+ membership of fleet_app in the tenant roles (so the application may SET ROLE to them)",
            "+ catalog entry",
        ]
    );
    let readme = std::fs::read_to_string(format!("{FLEET}/README.md")).unwrap();
    let shown: String = plan
        .stdout
        .lines()
        .take(9)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(readme.contains(&shown), "the README shows\n{shown}");

    // Merged: one apply onboards it, and the servers converge.
    let apply = tenants(&env, &["apply", "-f", dir]).await;
    assert_eq!(apply.code, 0, "{apply}");
    assert!(
        apply
            .stdout
            .contains("8 change(s) applied, 1 tenant(s) done"),
        "{apply}"
    );
    assert_eq!(tenants(&env, &["plan", "-f", dir]).await.code, 0);
    let list = tenants(&env, &["list", "-f", dir]).await;
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("initech  bridge  schema t_initech") && l.ends_with("ready")),
        "{list}"
    );

    // Each team's objects are its own: initech's schema is migrated and only
    // initech's roles may read it; acme's reporting user reads acme's schema only.
    let shared = pg.url_for(SHARED);
    assert_eq!(
        pg.psql(
            &shared,
            "SELECT to_regclass('t_initech.projects') IS NOT NULL"
        ),
        "t"
    );
    let may_read = |role: &str, table: &str| {
        pg.psql(
            &shared,
            &format!("SELECT has_table_privilege('{role}', '{table}', 'SELECT')"),
        )
    };
    assert_eq!(
        may_read("tenant_initech_customer", "t_initech.projects"),
        "t"
    );
    assert_eq!(may_read("acme_reporting", "t_acme.projects"), "t");
    assert_eq!(may_read("acme_reporting", "t_initech.projects"), "f");
    assert_eq!(may_read("tenant_initech_admin", "t_acme.projects"), "f");
    assert_eq!(
        pg.psql(
            &shared,
            "SELECT record->>'plan' FROM tenants.tenants WHERE id = 'initech'"
        ),
        "standard"
    );
    assert_eq!(tenants(&env, &["doctor", "-f", dir]).await.code, 0);
    std::fs::remove_dir_all(&repo).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_file_cannot_touch_another_tenants_objects() {
    // No DATABASE_URL: the refusals come from reading the files, before any
    // connection.
    let env = Environment::empty();
    let repo = checkout();
    let dir = repo.to_str().unwrap();
    // (the file, what it says, where and why it is refused)
    let cases: &[(&str, &str, &str)] = &[
        (
            "initech/tenants.toml",
            "[tenants.globex]\nprofile = \"free\"\n",
            "initech/tenants.toml:1:10: a file of team directory \"initech\" may only declare \
             tenant \"initech\" or tenants named \"initech-...\", not \"globex\"",
        ),
        (
            "initech/tenants.toml",
            "[tenants.initech]\nprofile = \"standard\"\nschema = \"t_acme\"\n",
            "initech/tenants.toml:3:1: schema \"t_acme\" is not named after tenant \"initech\"",
        ),
        (
            "initech/tenants.toml",
            "[tenants.initech]\nprofile = \"dedicated\"\ndatabase = \"fleet_acme_eu\"\n",
            "initech/tenants.toml:3:1: database \"fleet_acme_eu\" is not named after tenant \"initech\"",
        ),
        (
            "initech/tenants.toml",
            "[tenants.initech]\nprofile = \"standard\"\n[[tenants.initech.users]]\n\
             name = \"acme_reporting\"\nrole = \"admin\"\npassword_env = \"X\"\n",
            "initech/tenants.toml:4:1: user \"acme_reporting\" is not named after tenant \"initech\"",
        ),
        (
            "initech/tenants.toml",
            "[tenants.initech]\nprofile = \"standard\"\n[[tenants.initech.users]]\n\
             name = \"tenant_acme_admin\"\nrole = \"admin\"\npassword_env = \"X\"\n",
            "initech/tenants.toml:4:1: user \"tenant_acme_admin\" is not named after tenant \"initech\"",
        ),
        (
            "initech/tenants.toml",
            "[tenants.initech]\nprofile = \"standard\"\nparent = \"acme\"\n",
            "initech/tenants.toml:3:1: a file of team directory \"initech\" may only name a parent \
             of its own team, not \"acme\"",
        ),
        (
            "initech/tenants.toml",
            "[tenants.initech]\nprofile = \"standard\"\ndomains = [\"projects.acme.example\"]\n",
            "initech/tenants.toml:3:12: domain \"projects.acme.example\" is already declared in",
        ),
        (
            "initech/tenants.toml",
            "[servers.main]\nurl = \"postgres://elsewhere/fleet\"\n",
            "initech/tenants.toml:1:10: a file of team directory \"initech\" may not declare servers",
        ),
        (
            "initech/tenants.toml",
            "[profiles.standard]\nmodel = \"silo\"\n",
            "initech/tenants.toml:1:11: a file of team directory \"initech\" may not declare profiles",
        ),
        (
            "globex/more.toml",
            "[tenants.acme-eu]\nprofile = \"free\"\n",
            "globex/more.toml:1:10: a file of team directory \"globex\" may only declare tenant \
             \"globex\"",
        ),
    ];
    for (path, text, refusal) in cases {
        let file = repo.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        for command in ["plan", "apply"] {
            let run = tenants(&env, &[command, "-f", dir]).await;
            assert_eq!(run.code, 1, "{text:?}: {run}");
            let expected = format!("error: {dir}/{refusal}");
            assert!(
                run.stderr.starts_with(&expected),
                "{text:?}: expected {expected:?}\n{run}"
            );
        }
        std::fs::remove_file(&file).unwrap();
    }
    // Without the bad file, the same checkout reads again (and only then needs
    // its DATABASE_URL).
    let run = tenants(&env, &["plan", "-f", dir]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("DATABASE_URL"), "{run}");
    std::fs::remove_dir_all(&repo).unwrap();
}
