use std::process::ExitCode;

use clap::Parser;
use fwscript::cli::Cli;
use fwscript::commands::{json, Ui};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Exit code 2 means "plan: changes pending", so a usage error exits
        // 1 like every other error; --help and --version exit 0.
        Err(err) => {
            if err.use_stderr() && json::asked_for() {
                return ExitCode::from(json::usage_error(&err));
            }
            let _ = err.print();
            return ExitCode::from(u8::from(err.use_stderr()));
        }
    };
    fwscript::logging::init(cli.verbose, cli.quiet);
    let ui = Ui::new(cli.quiet);
    match fwscript::commands::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => {
            let text = ui.error_text(&err.to_string());
            eprint!("{text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(1)
        }
    }
}
