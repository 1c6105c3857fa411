//! Command-line arguments: the commands and flags of the design contract,
//! each with its help text (which `fwscript man` and the shell completions
//! are made from).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::netfilter::Family;

#[derive(Debug, Parser)]
#[command(
    name = "fwscript",
    version,
    about = "A Linux firewall written as a Rhai program.",
    long_about = "A Linux firewall written as a Rhai program: fwscript evaluates the script \
                  into iptables and ip6tables rules, compares them with the live kernel and \
                  applies the smallest change. Exit codes: 0 success (for `plan`: in sync), 1 \
                  any error, 2 `plan` only: changes pending.",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Where the last applied plan, the rollback snapshot and a pending
    /// confirm live.
    #[arg(
        long,
        global = true,
        env = "FWSCRIPT_STATE_DIR",
        default_value = "/var/lib/fwscript",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,

    /// More log output (`-v` debug, `-vv` trace); `RUST_LOG` works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors and warnings (JSON, when asked for, still prints).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate and validate a script; no kernel access.
    Check(CheckArgs),
    /// Print the iptables-restore input of the plan.
    Render(RenderArgs),
    /// Show what would change in the live kernel (exit 2 when changes are pending).
    Plan(PlanArgs),
    /// Make the kernel match the script.
    Apply(ApplyArgs),
    /// Apply inside a throwaway network namespace and show the result.
    Try(TryArgs),
    /// Keep what an `apply --confirm` applied.
    Confirm(JsonArg),
    /// Put back the state from before the last apply.
    Rollback(JsonArg),
    /// Daemon: apply, then re-apply on change, SIGHUP, and drift.
    Watch(WatchArgs),
    /// Which rule decides a packet, offline, from the plan.
    Explain(ExplainArgs),
    /// Remove everything fwscript owns (asks first on a terminal).
    Reset(ResetArgs),
    /// What is applied: which script, when, in sync or drifted, a pending
    /// confirm, the daemon, and the counters per script line.
    Status(StatusArgs),
    /// List the script functions with their documentation.
    Functions,
    /// Turn an existing ruleset (the live kernel, or iptables-save files)
    /// into a script that gives the same verdicts.
    Import(ImportArgs),
    /// Check a script against the expectations of its test files.
    Test(TestArgs),
    /// Print a shell completion script (what packages install).
    Completions(CompletionsArgs),
    /// Print the manual page in roff (what packages install).
    Man,
    /// Print the help of fwscript or of one of its commands.
    Help(HelpArgs),
    /// The timer `apply --confirm` leaves running (internal).
    #[command(hide = true)]
    ConfirmTimer {
        /// Tells this timer's apply from a later one.
        token: String,
    },
}

#[derive(Debug, Args)]
pub struct ScriptArg {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TryArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Print only this family's file, loadable by iptables-restore or
    /// ip6tables-restore as is.
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// Print the `ipset restore` input of the script's ipsets instead (with
    /// `--family`, of that family's only).
    #[arg(long)]
    pub sets: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// The longest `apply --confirm` wait: a day. Longer is no safety net.
pub const MAX_CONFIRM_SECS: u64 = 86_400;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Show what would change and stop; reads only.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Roll back by itself unless `fwscript confirm` runs within SECS
    /// (1 to 86400, one day).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_CONFIRM_SECS))]
    pub confirm: Option<u64>,
    /// Apply even when the lockout guard refuses, or a plan that was
    /// rolled back unconfirmed.
    #[arg(long)]
    pub force: bool,
    /// This is the apply at boot: if the script cannot be applied, put the
    /// last good ruleset (or the emergency one) in the kernel instead, and
    /// still fail. Implied on the first run since a reboot.
    #[arg(long)]
    pub boot: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Show what would be removed and stop; reads only.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask; needed on a terminal to reset without a question
    /// (without a terminal nothing is asked).
    #[arg(short, long)]
    pub yes: bool,
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md); on a terminal only with `--yes`, since it cannot
    /// ask.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Name the script line behind one rule of the kernel, by the id in
    /// its comment (`fws:0123456789ab` or `0123456789ab`).
    #[arg(long, value_name = "ID")]
    pub rule: Option<String>,
    /// Print one JSON object on standard output, errors included
    /// (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Compare the kernel with the plan and repair drift every SECS.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub resync: u64,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The firewall script (a Rhai file; the modules it imports are read
    /// from its folder).
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// tcp, udp, icmp, icmpv6, or a protocol number.
    #[arg(long, value_name = "PROTO")]
    pub proto: String,
    /// Source address; with `--dst`, it picks the family (else both are explained).
    #[arg(long, value_name = "ADDR")]
    pub src: Option<String>,
    /// Destination address.
    #[arg(long, value_name = "ADDR")]
    pub dst: Option<String>,
    /// Destination port (tcp and udp).
    #[arg(long, value_name = "PORT")]
    pub dport: Option<u16>,
    /// Source port (tcp and udp); unset, any source port.
    #[arg(long, value_name = "PORT")]
    pub sport: Option<u16>,
    /// Incoming interface (outgoing for `--chain output`).
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Outgoing interface, for `--chain forward` (and output).
    #[arg(long, value_name = "IFACE")]
    pub oface: Option<String>,
    /// input, forward or output.
    #[arg(long, default_value = "input")]
    pub chain: String,
    /// new, established, related or invalid.
    #[arg(long, default_value = "new")]
    pub state: String,
    /// For icmp and icmpv6: a type name or number (default echo-request).
    #[arg(long, value_name = "TYPE")]
    pub icmp_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An `iptables-save` file to import; without `--from` and `--from6`,
    /// the live kernel is read (both families).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// An `ip6tables-save` file to import.
    #[arg(long, value_name = "FILE")]
    pub from6: Option<PathBuf>,
    /// Print one JSON object (the script, the summary, the warnings).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The firewall script.
    pub script: PathBuf,
    /// Test files; without them, `NAME.test.rhai` and `NAME.*.test.rhai`
    /// beside the script `NAME.rhai`.
    pub tests: Vec<PathBuf>,
    /// Prove the expectations with real packets: the script is applied in
    /// throwaway network namespaces (root only).
    #[arg(long)]
    pub kernel: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The command whose help to print (none: fwscript's own).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

impl From<FamilyArg> for Family {
    fn from(arg: FamilyArg) -> Family {
        match arg {
            FamilyArg::Ipv4 => Family::Ipv4,
            FamilyArg::Ipv6 => Family::Ipv6,
        }
    }
}

impl Command {
    /// The command's name, as the JSON object names it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Check(_) => "check",
            Command::Render(_) => "render",
            Command::Plan(_) => "plan",
            Command::Apply(_) => "apply",
            Command::Try(_) => "try",
            Command::Confirm(_) => "confirm",
            Command::Rollback(_) => "rollback",
            Command::Watch(_) => "watch",
            Command::Explain(_) => "explain",
            Command::Reset(_) => "reset",
            Command::Status(_) => "status",
            Command::Functions => "functions",
            Command::Completions(_) => "completions",
            Command::Man => "man",
            Command::Help(_) => "help",
            Command::Import(_) => "import",
            Command::Test(_) => "test",
            Command::ConfirmTimer { .. } => "confirm-timer",
        }
    }

    /// Whether `--json` was asked for, and for a write, whether it is a
    /// dry run: what an error object needs to say.
    pub fn json(&self) -> Option<bool> {
        let (json, dry_run) = match self {
            Command::Check(args) => (args.json, true),
            Command::Plan(args) => (args.json, true),
            Command::Apply(args) => (args.json, args.dry_run),
            Command::Try(args) => (args.json, false),
            Command::Confirm(args) | Command::Rollback(args) => (args.json, false),
            Command::Reset(args) => (args.json, args.dry_run),
            Command::Status(args) => (args.json, true),
            Command::Import(args) => (args.json, true),
            Command::Test(args) => (args.json, true),
            _ => (false, false),
        };
        json.then_some(dry_run)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                assert!(
                    builtin || arg.get_help().is_some(),
                    "`{path}` argument `{}` has no help text",
                    arg.get_id()
                );
            }
            for sub in command.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "`{path} {}` has no help text",
                    sub.get_name()
                );
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        Cli::command().debug_assert();
        walk(&Cli::command(), "fwscript");
    }

    #[test]
    fn global_flags_go_after_the_command_too() {
        let cli = Cli::try_parse_from([
            "fwscript",
            "apply",
            "--boot",
            "--quiet",
            "/etc/fwscript/firewall.rhai",
        ])
        .unwrap();
        assert!(cli.quiet);
        assert_eq!(cli.command.json(), None);
        let cli = Cli::try_parse_from(["fwscript", "status", "--json", "-q"]).unwrap();
        assert!(cli.quiet);
        assert_eq!(cli.command.json(), Some(true));
    }
}
