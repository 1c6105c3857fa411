//! Command-line arguments: the commands and flags of DESIGN.md 5.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::netfilter::Family;

#[derive(Debug, Parser)]
#[command(
    name = "fwscript",
    version,
    about = "A Linux firewall written as a Rhai program."
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
        default_value = "/var/lib/fwscript"
    )]
    pub state_dir: PathBuf,

    /// More log output (`-v` debug, `-vv` trace); `RUST_LOG` works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate and validate a script; no kernel access.
    Check(ScriptArg),
    /// Print the iptables-restore input of the plan.
    Render(RenderArgs),
    /// Show what would change in the live kernel (exit 2 when changes are pending).
    Plan(PlanArgs),
    /// Make the kernel match the script.
    Apply(ApplyArgs),
    /// Apply inside a throwaway network namespace and show the result.
    Try(ScriptArg),
    /// Keep what an `apply --confirm` applied.
    Confirm,
    /// Put back the state from before the last apply.
    Rollback,
    /// Daemon: apply, then re-apply on change, SIGHUP, and drift.
    Watch(WatchArgs),
    /// Which rule decides a packet, offline, from the plan.
    Explain(ExplainArgs),
    /// Remove everything fwscript owns.
    Reset,
    /// List the script functions with their documentation.
    Functions,
    /// The timer `apply --confirm` leaves running (internal).
    #[command(hide = true)]
    ConfirmTimer { token: String },
}

#[derive(Debug, Args)]
pub struct ScriptArg {
    /// The firewall script.
    pub script: PathBuf,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
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
    pub script: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The longest `apply --confirm` wait: a day. Longer is no safety net.
pub const MAX_CONFIRM_SECS: u64 = 86_400;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    pub script: PathBuf,
    /// Show what would change and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Roll back by itself unless `fwscript confirm` runs within SECS
    /// (1 to 86400, one day).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_CONFIRM_SECS))]
    pub confirm: Option<u64>,
    /// Apply even when the lockout guard refuses.
    #[arg(long)]
    pub force: bool,
    /// This is the apply at boot: if the script cannot be applied, put the
    /// last good ruleset (or the emergency one) in the kernel instead, and
    /// still fail. Implied on the first run since a reboot.
    #[arg(long)]
    pub boot: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub script: PathBuf,
    /// Compare the kernel with the plan and repair drift every SECS.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub resync: u64,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    pub script: PathBuf,
    /// tcp, udp, icmp, icmpv6, or a protocol number.
    #[arg(long)]
    pub proto: String,
    /// Source address; with `--dst`, it picks the family (else both are explained).
    #[arg(long)]
    pub src: Option<String>,
    /// Destination address.
    #[arg(long)]
    pub dst: Option<String>,
    #[arg(long)]
    pub dport: Option<u16>,
    #[arg(long)]
    pub sport: Option<u16>,
    /// Incoming interface (outgoing for `--chain output`).
    #[arg(long)]
    pub iface: Option<String>,
    /// Outgoing interface, for `--chain forward` (and output).
    #[arg(long)]
    pub oface: Option<String>,
    /// input, forward or output.
    #[arg(long, default_value = "input")]
    pub chain: String,
    /// new, established, related or invalid.
    #[arg(long, default_value = "new")]
    pub state: String,
    /// For icmp and icmpv6: a type name or number (default echo-request).
    #[arg(long)]
    pub icmp_type: Option<String>,
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
