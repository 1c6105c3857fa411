use std::process::ExitCode;

use clap::Parser;
use fwscript::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    fwscript::logging::init(cli.verbose);
    match fwscript::commands::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(1)
        }
    }
}
