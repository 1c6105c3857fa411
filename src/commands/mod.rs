//! Runs one command: ties the pipeline stages together for each entry of
//! DESIGN.md 5. Everything here is orchestration; the logic lives in the
//! stage modules.

mod apply;
mod confirm;
mod explain;
mod report;
mod reset;
mod script;
mod try_script;
mod watch;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// How a successful command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for `plan`, the kernel is in sync.
    Done,
    /// `plan` only: changes are pending.
    ChangesPending,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::ChangesPending => 2,
        }
    }
}

pub fn run(cli: Cli) -> Result<Outcome, Error> {
    match cli.command {
        Command::Check(args) => script::check(&args.script),
        Command::Render(args) => {
            script::render(&args.script, args.family.map(Into::into), args.sets)
        }
        Command::Functions => script::functions(),
        Command::Plan(args) => apply::plan(&args, &cli.state_dir),
        Command::Apply(args) => apply::apply(&args, &cli.state_dir),
        Command::Try(args) => try_script::try_script(&args.script),
        Command::Reset => reset::reset(&cli.state_dir),
        Command::Confirm => confirm::confirm(&cli.state_dir),
        Command::Rollback => confirm::rollback(&cli.state_dir),
        Command::ConfirmTimer { token } => confirm::confirm_timer(&cli.state_dir, &token),
        Command::Explain(args) => explain::explain(&args),
        Command::Watch(args) => watch::watch(&args, &cli.state_dir),
    }
}
