//! Runs one command: ties the pipeline stages together for each command of
//! the design contract. Everything here is orchestration; the logic lives
//! in the stage modules.

mod apply;
mod changes;
mod completions;
mod confirm;
mod explain;
mod import;
pub mod json;
mod report;
mod reset;
mod root;
mod script;
mod status;
mod style;
mod test;
mod try_script;
mod warnings;
mod watch;

pub use style::Ui;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// How a command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for `plan`, the kernel is in sync.
    Done,
    /// `plan` only: changes are pending.
    ChangesPending,
    /// Done, and what it found is a failure (`test`: an expectation
    /// failed; a `--json` error already printed).
    Failed,
    /// Failed, and already said so (as a JSON error object).
    Reported,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::ChangesPending => 2,
            Outcome::Failed => 1,
            Outcome::Reported => 1,
        }
    }
}

/// Runs the command. With `--json`, an error is printed here as the
/// command's JSON object ([`Outcome::Reported`]); otherwise it is returned
/// for `main` to print.
pub fn run(cli: Cli) -> Result<Outcome, Error> {
    let ui = Ui::new(cli.quiet);
    let name = cli.command.name();
    let json = cli.command.json();
    let result = dispatch(cli, &ui).map_err(root::explain);
    match (result, json) {
        (Err(err), Some(dry_run)) => {
            json::print_error(name, &err, dry_run)?;
            Ok(Outcome::Reported)
        }
        (result, _) => result,
    }
}

fn dispatch(cli: Cli, ui: &Ui) -> Result<Outcome, Error> {
    let state_dir = &cli.state_dir;
    match cli.command {
        Command::Check(args) => script::check(ui, &args),
        Command::Render(args) => {
            script::render(&args.script, args.family.map(Into::into), args.sets)
        }
        Command::Functions => script::functions(),
        Command::Plan(args) => apply::plan(ui, &args, state_dir),
        Command::Apply(args) => apply::apply(ui, &args, state_dir),
        Command::Try(args) => try_script::try_script(ui, &args),
        Command::Reset(args) => reset::reset(ui, &args, state_dir),
        Command::Status(args) => status::status(ui, &args, state_dir),
        Command::Confirm(args) => confirm::confirm(ui, args.json, state_dir),
        Command::Rollback(args) => confirm::rollback(ui, args.json, state_dir),
        Command::ConfirmTimer { token } => confirm::confirm_timer(state_dir, &token),
        Command::Explain(args) => explain::explain(&args),
        Command::Watch(args) => watch::watch(&args, state_dir),
        Command::Import(args) => import::import(&args),
        Command::Test(args) => test::test(&args),
        Command::Completions(args) => completions::completions(args.shell),
        Command::Man => completions::man(),
        Command::Help(args) => completions::help(&args.command),
    }
}
