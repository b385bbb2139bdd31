//! `tenants`: tenants as code from the command line, as a library too, so that
//! tests and tools run the very same command in-process ([`execute`]).
//!
//! ```text
//! tenants plan    -f tenants.toml        # the diff; exit 0 nothing to do, 2 changes pending
//! tenants apply   -f tenants.toml        # make it so; --allow-destroy to drop tenants
//! tenants migrate -f tenants.toml        # pending migrations of every tenant
//! tenants destroy -f tenants.toml acme --confirm acme
//! tenants move    -f tenants.toml acme --to silo   # out of the pool, with its rows
//! tenants move    -f tenants.toml acme --to-node 10.0.0.7:5432   # on Citus: to a node of its own
//! tenants list    -f tenants.toml
//! tenants doctor  -f tenants.toml        # isolation hazards; exit 2 when any is found
//! ```
//!
//! `-f` takes a file or a directory of tenants files. Exit codes: 0 done (or
//! nothing to do), 1 error, 2 changes pending or hazards found.
//!
//! ```no_run
//! # async fn example() {
//! let mut out = Vec::new();
//! let code = tenants_cli::execute(["tenants", "plan", "-f", "tenants.toml"], &mut out, &mut std::io::stderr()).await;
//! assert!(code == 0 || code == 2, "{}", String::from_utf8_lossy(&out));
//! # }
//! ```

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tenants_core::{DataModel, SqlIdent, TenantId};
use tenants_db::Error;
use tenants_provision::{ApplyOptions, Progress, Provisioner, Report, TenantsFile};

pub use tenants_provision::Environment;

/// Tenants as code: plan, apply and check the tenants declared in a tenants file.
#[derive(Debug, Parser)]
#[command(name = "tenants", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows what apply would change (exit 0: nothing, 2: changes pending, 1: error).
    Plan(Common),
    /// Makes the servers match the file.
    Apply {
        #[command(flatten)]
        common: Common,
        /// Drop tenants that are no longer declared, with their data.
        #[arg(long)]
        allow_destroy: bool,
    },
    /// Runs the pending migrations of every provisioned tenant.
    Migrate(Common),
    /// Drops a tenant's database, schema or rows, its roles and users, and its catalog entry.
    Destroy {
        #[command(flatten)]
        common: Common,
        /// The tenant to drop.
        tenant: TenantId,
        /// The tenant's id again, to confirm; without it, only shows what would go.
        #[arg(long, value_name = "TENANT")]
        confirm: Option<String>,
    },
    /// Moves a tenant out of the pool into a database (silo) or schema (bridge) of its
    /// own, with its rows; or, on a Citus cluster, a pool or bridge tenant's data to
    /// a node of its own (--to-node). Safe to run again after an interruption.
    Move {
        #[command(flatten)]
        common: Common,
        /// The tenant to move.
        tenant: TenantId,
        /// The model to move it to.
        #[arg(long, value_enum, required_unless_present = "to_node")]
        to: Option<Target>,
        /// The Citus node (host:port) to move its data to, while the application
        /// keeps serving it.
        #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["to", "database", "schema", "server"])]
        to_node: Option<String>,
        /// The tenant's database (silo; default: its id, '-' written '_').
        #[arg(long, value_name = "NAME")]
        database: Option<SqlIdent>,
        /// The tenant's schema (bridge; default: its id, '-' written '_').
        #[arg(long, value_name = "NAME")]
        schema: Option<SqlIdent>,
        /// The server of its database (silo; default: the shared one).
        #[arg(long, value_name = "NAME")]
        server: Option<String>,
    },
    /// Lists the tenants, where they live and whether they match the file.
    List(Common),
    /// Checks the servers for isolation hazards (exit 2 when any is found).
    Doctor(Common),
}

/// Where `tenants move` puts a tenant.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Target {
    /// A schema of its own in the shared database.
    Bridge,
    /// A database of its own.
    Silo,
}

#[derive(Debug, Args)]
struct Common {
    /// The tenants file, or a directory of tenants files.
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR")]
    file: PathBuf,
    /// Tenants worked on at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    parallel: usize,
}

/// Why a command failed: the engine's error, or output that could not be written.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// What a command found, as an exit code.
enum Outcome {
    Done,
    Pending,
}

/// Runs the `tenants` command with `args` (the first one is the program name),
/// writing what it prints to `out` and its errors to `err`, and returns its exit
/// code: 0 done, 1 error, 2 changes pending or hazards found.
///
/// The variables the tenants file names (`url_env`, `password_env`, ...) are read
/// from the process environment; see [`execute_with_env`] to give them.
pub async fn execute<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    execute_with_env(args, Environment::process(), out, err).await
}

/// Runs the `tenants` command as [`execute`] does, reading the variables the
/// tenants file names from `env`: what `DATABASE_URL=... tenants plan` does in a
/// shell, without touching this process's environment.
///
/// ```no_run
/// # async fn example() {
/// use tenants_cli::Environment;
///
/// let env = Environment::process().var("DATABASE_URL", "postgres://postgres@localhost/app");
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let code = tenants_cli::execute_with_env(["tenants", "plan", "-f", "tenants.toml"], env, &mut out, &mut err).await;
/// # }
/// ```
pub async fn execute_with_env<I, T>(
    args: I,
    env: Environment,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // Usage errors exit 1, like every error: 2 means "changes pending" to pipelines.
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // Writing to a closed stream is the only failure, and nothing is left to do.
        Err(error) if error.use_stderr() => {
            let _ = write!(err, "{}", error.render());
            return 1;
        }
        // --help and --version.
        Err(error) => {
            let _ = write!(out, "{}", error.render());
            return 0;
        }
    };
    match run(cli.command, &env, out).await {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Pending) => 2,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                let _ = writeln!(err, "  caused by: {cause}");
                source = cause.source();
            }
            1
        }
    }
}

async fn connect(common: &Common, env: &Environment) -> Result<Provisioner, Failure> {
    let file = TenantsFile::load(&common.file)?;
    Ok(Provisioner::connect_with_env(file, env.clone())
        .await?
        .parallelism(common.parallel))
}

async fn run(command: Command, env: &Environment, out: &mut dyn Write) -> Result<Outcome, Failure> {
    match command {
        Command::Plan(common) => {
            let provisioner = connect(&common, env).await?;
            let plan = provisioner.plan().await?;
            write!(out, "{plan}")?;
            Ok(if plan.is_empty() {
                Outcome::Done
            } else {
                Outcome::Pending
            })
        }
        Command::Apply {
            common,
            allow_destroy,
        } => {
            let provisioner = connect(&common, env).await?;
            let plan = provisioner.plan().await?;
            write!(out, "{plan}")?;
            if plan.is_empty() {
                return Ok(Outcome::Done);
            }
            let options = with_progress(ApplyOptions::new().allow_destroy(allow_destroy));
            let report = provisioner.apply(&plan, &options).await?;
            finish(&report, out)
        }
        Command::Migrate(common) => {
            let provisioner = connect(&common, env).await?;
            let report = provisioner
                .migrate(&with_progress(ApplyOptions::new()))
                .await?;
            finish(&report, out)
        }
        Command::Destroy {
            common,
            tenant: id,
            confirm,
        } => {
            let provisioner = connect(&common, env).await?;
            let plan = provisioner.destroy_plan(id).await?;
            if plan.is_empty() {
                writeln!(out, "Tenant {id} has nothing to drop.")?;
                return Ok(Outcome::Done);
            }
            write!(out, "{plan}")?;
            match confirm {
                None => {
                    writeln!(
                        out,
                        "Nothing was dropped: run again with --confirm {id} to drop it."
                    )?;
                    Ok(Outcome::Pending)
                }
                Some(confirm) if confirm != id.as_str() => Err(Error::Config(format!(
                    "--confirm {confirm:?} does not match tenant {id}; nothing was dropped"
                ))
                .into()),
                Some(_) => {
                    let report = provisioner
                        .apply(&plan, &ApplyOptions::new().allow_destroy(true))
                        .await?;
                    finish(&report, out)
                }
            }
        }
        Command::Move {
            common,
            tenant: id,
            to_node: Some(node),
            ..
        } => {
            let provisioner = connect(&common, env).await?;
            provisioner.move_to_node(id, &node).await?;
            writeln!(out, "Tenant {id}'s data is on node {node} now.")?;
            Ok(Outcome::Done)
        }
        Command::Move {
            common,
            tenant: id,
            to: Some(to),
            database,
            schema,
            server,
            to_node: None,
        } => {
            let name = |given: Option<SqlIdent>| match given {
                Some(name) => Ok(name),
                None => SqlIdent::new(id.as_str().replace('-', "_"))
                    .map_err(|e| Error::Config(e.to_string())),
            };
            let model = match to {
                Target::Silo => DataModel::Silo {
                    database: name(database)?,
                    server,
                },
                Target::Bridge => DataModel::Bridge {
                    schema: name(schema)?,
                },
            };
            let provisioner = connect(&common, env).await?;
            let place = match &model {
                DataModel::Silo { database, .. } => format!("database {database}"),
                DataModel::Bridge { schema } => format!("schema {schema}"),
                DataModel::Pool => "the pool".to_owned(),
            };
            provisioner.move_tenant(id, model).await?;
            writeln!(out, "Tenant {id} lives in {place} now.")?;
            Ok(Outcome::Done)
        }
        // clap requires one of --to and --to-node, and refuses both.
        Command::Move { .. } => Err(Error::Config("move needs --to or --to-node".into()).into()),
        Command::List(common) => {
            let provisioner = connect(&common, env).await?;
            let tenants = provisioner.list().await?;
            let width = tenants
                .iter()
                .map(|t| t.id.as_str().len())
                .max()
                .unwrap_or(6);
            // Citus's per-tenant load, when the cluster tracks it.
            let loads = tenants.iter().any(|t| t.load.is_some());
            let head = if loads { "  QUERIES  CPU(s)" } else { "" };
            writeln!(
                out,
                "{:width$}  {:6}  {:32}  STATE{head}",
                "TENANT", "MODEL", "WHERE"
            )?;
            for tenant in tenants {
                let load = match (loads, tenant.load) {
                    (false, _) => String::new(),
                    (true, Some(l)) => format!("  {:7}  {:.3}", l.queries, l.cpu_seconds),
                    (true, None) => "  -".to_owned(),
                };
                writeln!(
                    out,
                    "{:width$}  {:6}  {:32}  {}{load}",
                    tenant.id.as_str(),
                    tenant.model,
                    tenant.location,
                    tenant.state
                )?;
            }
            Ok(Outcome::Done)
        }
        Command::Doctor(common) => {
            let provisioner = connect(&common, env).await?;
            let findings = provisioner.doctor().await?;
            if findings.is_empty() {
                writeln!(out, "No isolation hazards found.")?;
                return Ok(Outcome::Done);
            }
            for finding in &findings {
                writeln!(out, "! {finding}")?;
            }
            writeln!(out, "\n{} hazard(s) found.", findings.len())?;
            Ok(Outcome::Pending)
        }
    }
}

/// Adds a progress bar over the tenants (drawn only on a terminal).
fn with_progress(options: ApplyOptions) -> ApplyOptions {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {elapsed_precise} {msg}")
    {
        bar.set_style(style);
    }
    options.on_progress(move |progress| match progress {
        Progress::Tenants(total) => bar.set_length(total as u64),
        Progress::TenantDone { tenant, ok } => {
            if !ok {
                bar.println(format!("failed: {tenant}"));
            }
            bar.inc(1);
            if bar.position() == bar.length().unwrap_or(0) {
                bar.finish_and_clear();
            }
        }
        _ => {}
    })
}

fn finish(report: &Report, out: &mut dyn Write) -> Result<Outcome, Failure> {
    writeln!(out, "{report}")?;
    if report.is_success() {
        Ok(Outcome::Done)
    } else {
        Err(Error::Config(format!(
            "{} tenant(s) failed; fix them and run again to resume",
            report.failures.len()
        ))
        .into())
    }
}
