//! The `tenants` binary; the command itself lives in the library ([`tenants_cli::execute`]).

use std::process::ExitCode;

fn main() -> ExitCode {
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
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    ExitCode::from(runtime.block_on(tenants_cli::execute(
        std::env::args_os(),
        &mut out,
        &mut err,
    )))
}
