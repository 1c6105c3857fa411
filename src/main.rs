use std::process::ExitCode;

use clap::Parser;
use fwscript::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Exit code 2 means "plan: changes pending" (DESIGN.md 5), so a usage
        // error exits 1 like every other error; --help and --version exit 0.
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::from(err.use_stderr()));
        }
    };
    fwscript::logging::init(cli.verbose);
    match fwscript::commands::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => {
            eprint!("{err}");
            if !err.to_string().ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(1)
        }
    }
}
