//! `completions`, `man` and `help`: what packages install, made from the
//! command-line definition itself, so they never fall behind it.

use std::io::Write as _;

use clap::CommandFactory;

use super::Outcome;
use crate::cli::{Cli, ShellArg};
use crate::error::Error;

pub fn completions(shell: ShellArg) -> Result<Outcome, Error> {
    let shell = match shell {
        ShellArg::Bash => clap_complete::Shell::Bash,
        ShellArg::Zsh => clap_complete::Shell::Zsh,
        ShellArg::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fwscript", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(Outcome::Done)
}

/// fwscript(1), with a section per command.
pub fn man() -> Result<Outcome, Error> {
    let command = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    render_commands(&mut out, &command)?;
    render_text(&mut out, "EXIT STATUS", EXIT_STATUS)?;
    render_text(&mut out, "ENVIRONMENT", ENVIRONMENT)?;
    render_text(&mut out, "FILES", FILES)?;
    man.render_version_section(&mut out)?;
    std::io::stdout().lock().write_all(&out)?;
    Ok(Outcome::Done)
}

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success; for plan, the kernel is in sync"),
    ("1", "any error: script, kernel, usage, refused"),
    ("2", "plan only: changes are pending"),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "FWSCRIPT_STATE_DIR",
        "the state folder (default /var/lib/fwscript; also --state-dir)",
    ),
    (
        "FWSCRIPT_IPTABLES",
        "nft or legacy: force an iptables backend instead of detecting it",
    ),
    (
        "FWSCRIPT_LOCK_WAIT",
        "seconds to wait for the xtables lock and for another fwscript (default 10)",
    ),
    (
        "NO_COLOR",
        "set and not empty: no colour, even on a terminal",
    ),
    (
        "FWSCRIPT_IPSET",
        "the ipset program to run (default: ipset in PATH or the sbin folders)",
    ),
    ("RUST_LOG", "log filter, e.g. debug"),
    (
        "SSH_CONNECTION",
        "set by sshd; arms the lockout guard of apply and watch",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/fwscript/firewall.rhai",
        "the script the systemd units apply",
    ),
    (
        "/var/lib/fwscript",
        "the state folder: the last applied rules, the rollback snapshot, a pending confirm",
    ),
    (
        "/usr/share/doc/fwscript",
        "the documentation, docs/json.md among it, and example scripts",
    ),
];

fn render_commands(out: &mut Vec<u8>, command: &clap::Command) -> std::io::Result<()> {
    writeln!(out, ".SH COMMANDS")?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut usage = sub.clone().bin_name(format!("fwscript {}", sub.get_name()));
        writeln!(out, ".TP")?;
        writeln!(
            out,
            "\\fB{}\\fR",
            roff(&usage.render_usage().to_string().replace("Usage: ", ""))
        )?;
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            writeln!(out, "{}", roff(&about.to_string()))?;
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
        {
            let name = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().as_str().to_uppercase(),
            };
            if let Some(help) = arg.get_help() {
                writeln!(out, ".RS")?;
                writeln!(out, ".TP")?;
                writeln!(out, "\\fI{}\\fR", roff(&name))?;
                writeln!(out, "{}", roff(&help.to_string()))?;
                writeln!(out, ".RE")?;
            }
        }
    }
    Ok(())
}

fn render_text(out: &mut Vec<u8>, title: &str, items: &[(&str, &str)]) -> std::io::Result<()> {
    writeln!(out, ".SH {title}")?;
    for (name, text) in items {
        writeln!(out, ".TP")?;
        writeln!(out, "\\fB{}\\fR", roff(name))?;
        writeln!(out, "{}", roff(text))?;
    }
    Ok(())
}

/// Text made safe for roff: backslashes doubled, hyphens as minus signs,
/// and no line starting with a control character.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\\\").replace('-', "\\-");
    text.lines()
        .map(
            |line| match line.starts_with('.') || line.starts_with('\'') {
                true => format!("\\&{line}"),
                false => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// `fwscript help [COMMAND]`: the same as `--help`, for those who type it
/// the other way round.
pub fn help(path: &[String]) -> Result<Outcome, Error> {
    let mut command = Cli::command();
    let mut found = &command;
    for name in path {
        found = found.find_subcommand(name).ok_or_else(|| {
            Error::Refused(format!("no command `{name}`; `fwscript --help` lists them"))
        })?;
    }
    let args = std::iter::once("fwscript")
        .chain(path.iter().map(String::as_str))
        .chain(["--help"]);
    match command.try_get_matches_from_mut(args) {
        Err(shown) if shown.kind() == clap::error::ErrorKind::DisplayHelp => {
            shown.print()?;
            Ok(Outcome::Done)
        }
        _ => Err(Error::Refused("cannot show that help".to_string())),
    }
}
