//! `cae-bench`: pretrain CAE / BEiT encoders and measure them downstream.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cae_bench::cli::Cli::parse();
    cae_bench::cli::init_tracing(cli.verbose);
    match cae_bench::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
