//! The `cae-bench` command line, built inside the end-to-end test package so that its tests can
//! run (and kill) it as a child process.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cae_bench::cli::Cli::parse();
    cae_bench::cli::init_tracing(cli.verbose);
    match cae_bench::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
