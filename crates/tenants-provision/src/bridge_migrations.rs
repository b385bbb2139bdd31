//! The shared migrations as bridge tenants run them: inside each tenant's schema,
//! which the engine puts first on the migrating connection's `search_path`. A
//! migration that moves the search path, changes role, or creates or changes an
//! object in the fixed schema `public` would act outside the tenant's schema (the first tenant
//! creates them, the next fail, and their history blames the wrong table), so
//! `plan` refuses it, with the file, the line and the reason.

use std::path::Path;

use sqlx::migrate::Migrator;

use tenants_db::Error;

/// What a line of SQL must not do in a bridge migration, and why. Matched on the
/// line lowercased, with runs of spaces made one and `--` comments removed.
const RULES: &[(&str, &str)] = &[
    ("set search_path", "sets search_path"),
    ("set session search_path", "sets search_path"),
    ("set local search_path", "sets search_path"),
    ("set_config('search_path'", "sets search_path"),
    ("set role", "changes role"),
    ("set session role", "changes role"),
    ("set local role", "changes role"),
    ("set session authorization", "changes role"),
    ("create schema", "creates a schema"),
];

/// Statements that create or change objects, followed by a name in `public`:
/// they would land in the shared schema for every tenant. (Reading from `public`,
/// `public.gen_random_uuid()` say, is fine.)
const WRITES_PUBLIC: &[&str] = &[
    "table public.",
    "view public.",
    "index public.",
    " on public.",
    "sequence public.",
    "function public.",
    "procedure public.",
    "type public.",
    "trigger public.",
    "into public.",
    "update public.",
    "delete from public.",
];

const WHY: &str = "bridge tenants run each migration inside their own schema, first on \
                   the search_path; write unqualified names and leave search_path and \
                   role alone";

/// Refuses migrations a bridge tenant cannot run in its own schema
/// ([`Error::BridgeMigrations`], one line per offence: `file:line: reason`). `dir`
/// names the files; embedded migrations are named by version and description.
pub(crate) fn check(migrator: &Migrator, dir: Option<&Path>) -> Result<(), Error> {
    let mut problems = Vec::new();
    for migration in migrator.iter() {
        let name = file_name(migration.version, &migration.description, dir);
        for (number, line) in migration.sql.as_str().lines().enumerate() {
            let code = normalized(line).replace("\"public\".", "public.");
            let reason = RULES
                .iter()
                .find(|(rule, _)| code.contains(rule))
                .map(|(_, reason)| *reason)
                .or_else(|| {
                    WRITES_PUBLIC
                        .iter()
                        .any(|rule| code.contains(rule))
                        .then_some("creates or changes an object in the fixed schema public")
                });
            if let Some(reason) = reason {
                problems.push(format!("{name}:{}: {reason}", number + 1));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::BridgeMigrations { problems, why: WHY })
    }
}

/// The migration's file in `dir` (`0002_add_colour.sql`: sqlx reads the version
/// from the digits, so leading zeros are allowed), or its version and description.
fn file_name(version: i64, description: &str, dir: Option<&Path>) -> String {
    let stem = description.replace(' ', "_");
    let found = dir
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            name.split_once('_').is_some_and(|(digits, rest)| {
                digits.parse() == Ok(version) && rest.starts_with(&stem)
            })
        });
    match found {
        Some(path) => path.display().to_string(),
        None => format!("migration {version} ({description})"),
    }
}

/// `line` lowercased, without its `--` comment, with runs of whitespace made one
/// space, and without spaces around `(` and `=`.
fn normalized(line: &str) -> String {
    let code = line.split("--").next().unwrap_or_default().to_lowercase();
    let mut words = code.split_whitespace().collect::<Vec<_>>().join(" ");
    for (from, to) in [(" (", "("), ("( ", "("), (" =", "="), ("= ", "=")] {
        words = words.replace(from, to);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::migrate::{Migration, MigrationType};

    fn migrator(sql: &'static str) -> Migrator {
        Migrator::with_migrations(vec![Migration::new(
            2,
            "add colour".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(sql),
            false,
        )])
    }

    #[test]
    fn moving_the_search_path_changing_role_or_naming_public_is_refused() {
        for (sql, reason) in [
            (
                "CREATE TABLE a (x int);\nSET  search_path = x;",
                "2: sets search_path",
            ),
            (
                "SELECT set_config( 'search_path', 'x', false);",
                "1: sets search_path",
            ),
            ("SET LOCAL ROLE owner;", "1: changes role"),
            (
                "CREATE TABLE \"public\".a (x int);",
                "1: creates or changes an object in the fixed schema public",
            ),
            ("CREATE INDEX a_x ON public.a (x);", "1: creates or changes"),
        ] {
            let err = check(&migrator(sql), None).unwrap_err().to_string();
            assert!(
                err.contains(&format!("migration 2 (add colour):{reason}")),
                "{err}"
            );
            assert!(err.contains("unqualified names"), "{err}");
        }
    }

    #[test]
    fn ordinary_migrations_and_comments_pass() {
        let sql = "-- SET search_path = x; is what we never do\n\
                   CREATE TABLE a (id uuid PRIMARY KEY DEFAULT public.gen_random_uuid(), note text);\n\
                   CREATE INDEX a_note ON a (note);";
        check(&migrator(sql), None).unwrap();
    }
}
