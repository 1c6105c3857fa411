//! Runs one command: ties the pipeline stages together for each entry of
//! DESIGN.md 5. Everything here is orchestration; the logic lives in the
//! stage modules.

mod explain;
mod import;
mod json;
mod kernel;
mod script;
mod test;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// How a successful command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for `plan`, the kernel is in sync.
    Done,
    /// `plan` only: changes are pending.
    ChangesPending,
    /// Done, and what it found is a failure (`test`: an expectation
    /// failed; a `--json` error already printed).
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::ChangesPending => 2,
            Outcome::Failed => 1,
        }
    }
}

pub fn run(cli: Cli) -> Result<Outcome, Error> {
    match cli.command {
        Command::Check(args) => script::check(&args.script),
        Command::Render(args) => script::render(&args.script, args.family.map(Into::into)),
        Command::Functions => script::functions(),
        Command::Plan(args) => kernel::plan(&args),
        Command::Apply(args) => kernel::apply(&args, &cli.state_dir),
        Command::Try(args) => kernel::try_script(&args.script),
        Command::Reset => kernel::reset(&cli.state_dir),
        Command::Confirm => kernel::confirm(&cli.state_dir),
        Command::Rollback => kernel::rollback(&cli.state_dir),
        Command::ConfirmTimer { token } => kernel::confirm_timer(&cli.state_dir, &token),
        Command::Explain(args) => explain::explain(&args),
        Command::Watch(args) => kernel::watch(&args, &cli.state_dir),
        Command::Import(args) => import::import(&args),
        Command::Test(args) => test::test(&args),
    }
}
