//! `tenants`: tenants as code from the command line.
//!
//! ```text
//! tenants plan    -f tenants.toml        # the diff; exit 0 nothing to do, 2 changes pending
//! tenants apply   -f tenants.toml        # make it so; --allow-destroy to drop tenants
//! tenants migrate -f tenants.toml        # pending migrations of every tenant
//! tenants destroy -f tenants.toml acme --confirm acme
//! tenants list    -f tenants.toml
//! tenants doctor  -f tenants.toml        # isolation hazards; exit 2 when any is found
//! ```
//!
//! `-f` takes a file or a directory of tenants files. Exit codes: 0 done (or
//! nothing to do), 1 error, 2 changes pending or hazards found.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tenants_core::TenantId;
use tenants_db::Error;
use tenants_db::provision::{ApplyOptions, Progress, Provisioner, Report, TenantsFile};

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
        tenant: String,
        /// The tenant's id again, to confirm; without it, only shows what would go.
        #[arg(long, value_name = "TENANT")]
        confirm: Option<String>,
    },
    /// Lists the tenants, where they live and whether they match the file.
    List(Common),
    /// Checks the servers for isolation hazards (exit 2 when any is found).
    Doctor(Common),
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

/// What a command found, as an exit code.
enum Outcome {
    Done,
    Pending,
}

fn main() -> ExitCode {
    // Usage errors exit 1, like every error: 2 means "changes pending" to pipelines.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 1 } else { 0 };
            // Printing to a closed stdout is the only failure, and nothing is left to do.
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Pending) => ExitCode::from(2),
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(1)
        }
    }
}

async fn connect(common: &Common) -> Result<Provisioner, Error> {
    let file = TenantsFile::load(&common.file)?;
    Ok(Provisioner::connect(file)
        .await?
        .parallelism(common.parallel))
}

async fn run(command: Command) -> Result<Outcome, Error> {
    match command {
        Command::Plan(common) => {
            let provisioner = connect(&common).await?;
            let plan = provisioner.plan().await?;
            print!("{plan}");
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
            let provisioner = connect(&common).await?;
            let plan = provisioner.plan().await?;
            if plan.is_empty() {
                print!("{plan}");
                return Ok(Outcome::Done);
            }
            print!("{plan}");
            let options = with_progress(ApplyOptions::new().allow_destroy(allow_destroy));
            let report = provisioner.apply(&plan, &options).await?;
            finish(&report)
        }
        Command::Migrate(common) => {
            let provisioner = connect(&common).await?;
            let report = provisioner
                .migrate(&with_progress(ApplyOptions::new()))
                .await?;
            finish(&report)
        }
        Command::Destroy {
            common,
            tenant,
            confirm,
        } => {
            let id: TenantId = tenant.parse().map_err(|e| Error::Config(format!("{e}")))?;
            let provisioner = connect(&common).await?;
            let plan = provisioner.destroy_plan(id).await?;
            if plan.is_empty() {
                println!("Tenant {id} has nothing to drop.");
                return Ok(Outcome::Done);
            }
            print!("{plan}");
            match confirm {
                None => {
                    println!("Nothing was dropped: run again with --confirm {id} to drop it.");
                    Ok(Outcome::Pending)
                }
                Some(confirm) if confirm != id.as_str() => Err(Error::Config(format!(
                    "--confirm {confirm:?} does not match tenant {id}; nothing was dropped"
                ))),
                Some(_) => {
                    let report = provisioner
                        .apply(&plan, &ApplyOptions::new().allow_destroy(true))
                        .await?;
                    finish(&report)
                }
            }
        }
        Command::List(common) => {
            let provisioner = connect(&common).await?;
            let tenants = provisioner.list().await?;
            let width = tenants
                .iter()
                .map(|t| t.id.as_str().len())
                .max()
                .unwrap_or(6);
            println!("{:width$}  {:6}  {:32}  STATE", "TENANT", "MODEL", "WHERE");
            for tenant in tenants {
                println!(
                    "{:width$}  {:6}  {:32}  {}",
                    tenant.id.as_str(),
                    tenant.model,
                    tenant.location,
                    tenant.state
                );
            }
            Ok(Outcome::Done)
        }
        Command::Doctor(common) => {
            let provisioner = connect(&common).await?;
            let findings = provisioner.doctor().await?;
            if findings.is_empty() {
                println!("No isolation hazards found.");
                return Ok(Outcome::Done);
            }
            for finding in &findings {
                println!("! {finding}");
            }
            println!("\n{} hazard(s) found.", findings.len());
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

fn finish(report: &Report) -> Result<Outcome, Error> {
    println!("{report}");
    if report.is_success() {
        Ok(Outcome::Done)
    } else {
        Err(Error::Config(format!(
            "{} tenant(s) failed; fix them and run again to resume",
            report.failures.len()
        )))
    }
}
