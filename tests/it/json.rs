//! The JSON contract of docs/json.md, byte for byte: the object of every
//! command that takes `--json`, run on a fixed kernel (a fresh nf_tables
//! namespace holding one foreign rule), compared with tests/golden/json-*.
//! Times and names that change from run to run are replaced before the
//! comparison; everything else (rule ids, positions, origins, warnings) is
//! what a consumer gets. A set-only edit is seen by `plan`, `apply` and
//! `status` and counted. `FWSCRIPT_UPDATE_GOLDEN=1` rewrites them. Needs
//! root; skips loudly without it (fails under CI).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::netns::{kernel_available, Netns, Run};
use crate::golden::check_golden;

const SCRIPT: &str = r#"// a web server that also masquerades a lab network
allow_tcp([80, 443]);
ssh_from("203.0.113.7");
policy("output", "accept");
masquerade("eth1");
"#;

struct Fixture {
    dir: tempfile::TempDir,
    netns: Netns,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fw.rhai"), SCRIPT).unwrap();
        std::fs::write(dir.path().join("other.rhai"), "allow_tcp(22);\n").unwrap();
        std::fs::write(
            dir.path().join("broken.rhai"),
            "allow_tcp(22);\nallow_tcp(70000);\n",
        )
        .unwrap();
        let netns = Netns::new("nft");
        // A foreign rule ahead of fwscript's accepting hook: a warning.
        netns.sh("$IPT -A INPUT -s 198.51.100.0/24 -j ACCEPT");
        Fixture { dir, netns }
    }

    /// fwscript in the namespace, from the scripts' folder (so origins read
    /// `fw.rhai`), with a state folder of its own.
    fn run(&self, args: &[&str]) -> Run {
        let output = self
            .netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .current_dir(self.dir.path())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .args(args)
            .output()
            .expect("fwscript runs");
        Run::from(output)
    }

    /// Runs `args`, expects `code`, and compares its one JSON object.
    fn golden(&self, name: &str, args: &[&str], code: i32) -> Value {
        let run = self.run(args).expect(code);
        golden_of(name, &run)
    }
}

/// The object of `run` against `tests/golden/NAME`: exactly one line of
/// JSON on standard output, made deterministic, compared pretty-printed.
fn golden_of(name: &str, run: &Run) -> Value {
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "{name}: one line of JSON on stdout: {run:#?}"
    );
    let mut value: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("{name}: not JSON ({err}): {run:#?}"));
    assert_eq!(value["schema"], 1, "{name}");
    normalise(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap();
    text.push('\n');
    check_golden(name, &text);
    value
}

/// Times, deadlines and the names of throwaway namespaces vary by run.
fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match (key.as_str(), &*item) {
                    ("at" | "deadline" | "started_at" | "seconds_left", Value::Number(_)) => {
                        *item = Value::from(0)
                    }
                    ("at_utc" | "deadline_utc", Value::String(_)) => *item = Value::from("TIME"),
                    ("namespace", Value::String(_)) => *item = Value::from("NAMESPACE"),
                    // iptables-save's `# Generated … on <date>` lines.
                    (_, Value::String(text)) if text.contains("\n# ") || text.starts_with("# ") => {
                        let kept: Vec<&str> =
                            text.lines().filter(|l| !l.starts_with('#')).collect();
                        *item = Value::from(kept.join("\n") + "\n");
                    }
                    _ => normalise(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[test]
fn every_command_prints_its_golden_object() {
    if !kernel_available() {
        return;
    }
    let fx = Fixture::new();
    fx.golden("json-check.json", &["check", "--json", "fw.rhai"], 0);
    let plan = fx.golden("json-plan.json", &["plan", "--json", "fw.rhai"], 2);
    assert_eq!(plan["changed"], false);
    assert_eq!(plan["in_sync"], false);
    let kinds: Vec<&Value> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["kind"])
        .collect();
    assert!(kinds.contains(&&Value::from("bypass")), "{kinds:?}");
    assert!(kinds.contains(&&Value::from("forwarding_off")), "{kinds:?}");

    let before = fx.netns.saves();
    let dry = fx.golden(
        "json-apply-dry-run.json",
        &["apply", "--dry-run", "--json", "fw.rhai"],
        0,
    );
    assert_eq!(
        (&dry["changed"], &dry["dry_run"]),
        (&false.into(), &true.into())
    );
    assert_eq!(fx.netns.saves(), before, "a dry run writes nothing");
    assert_eq!(dry["changes"], plan["changes"], "the dry run is the plan");

    let applied = fx.golden("json-apply.json", &["apply", "--json", "fw.rhai"], 0);
    assert_eq!(applied["changed"], true);
    assert_eq!(
        applied["changes"], plan["changes"],
        "what ran is what was planned"
    );
    assert_ne!(fx.netns.saves(), before);
    let again = fx.golden(
        "json-apply-in-sync.json",
        &["apply", "--json", "fw.rhai"],
        0,
    );
    assert_eq!(
        (&again["changed"], &again["in_sync"]),
        (&false.into(), &true.into())
    );
    fx.golden("json-status.json", &["status", "--json"], 0);

    // Someone adds a rule to fwscript's chain, and changes one of its own
    // keeping the comment.
    let save = fx.netns.sh("$IPT -S FWS-INPUT-ALLOW");
    let web = save
        .lines()
        .find(|l| l.contains("--dport 80 "))
        .and_then(|l| l.split("fws:").nth(1))
        .map(|rest| rest[..12].to_string())
        .expect("the rule of port 80");
    fx.netns.sh(&format!(
        "$IPT -R FWS-INPUT-ALLOW 1 -p tcp --dport 81 -m comment --comment fws:{web} -j ACCEPT \
         && $IPT -I FWS-INPUT-ALLOW 1 -s 192.0.2.9 -j ACCEPT"
    ));
    let drift = fx.golden("json-plan-drift.json", &["plan", "--json", "fw.rhai"], 2);
    let whys: Vec<&Value> = drift["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["why"])
        .collect();
    assert!(whys.contains(&&Value::from("drift")), "{whys:?}");
    assert!(
        whys.contains(&&Value::from("changed_behind_fwscripts_back")),
        "{whys:?}"
    );
    let status = fx.golden("json-status-drift.json", &["status", "--json"], 0);
    assert_eq!(status["kernel"]["in_sync"], false);
    assert_eq!(
        status["kernel"]["changes"], drift["changes"],
        "the same diff as plan"
    );
    fx.golden(
        "json-status-rule.json",
        &["status", "--json", "--rule", &format!("fws:{web}")],
        0,
    );
    fx.golden("json-apply-repair.json", &["apply", "--json", "fw.rhai"], 0);

    // Another script, then back.
    fx.golden(
        "json-apply-other.json",
        &["apply", "--json", "other.rhai"],
        0,
    );
    let rolled = fx.golden("json-rollback.json", &["rollback", "--json"], 0);
    assert_eq!(rolled["changed"], true);

    // Errors: a script's, a command line's, a refusal's.
    let broken = fx.golden(
        "json-error-script.json",
        &["apply", "--json", "broken.rhai"],
        1,
    );
    assert_eq!(broken["error"]["file"], "broken.rhai");
    assert_eq!(broken["error"]["line"], 2);
    assert_eq!(broken["error"]["col"], 11, "under the bad argument");
    assert_eq!(broken["changed"], false);
    fx.golden("json-error-usage.json", &["apply", "--json"], 1);
    fx.golden(
        "json-error-rule.json",
        &["status", "--json", "--rule", "fws:000000000000"],
        1,
    );
    fx.golden("json-error-confirm.json", &["confirm", "--json"], 1);

    // A confirm, kept.
    fx.golden(
        "json-apply-confirm.json",
        &["apply", "--json", "--confirm", "60", "other.rhai"],
        0,
    );
    fx.golden("json-status-pending.json", &["status", "--json"], 0);
    fx.golden("json-confirm.json", &["confirm", "--json"], 0);

    let before = fx.netns.saves();
    fx.golden(
        "json-reset-dry-run.json",
        &["reset", "--dry-run", "--json"],
        0,
    );
    assert_eq!(fx.netns.saves(), before, "a dry run writes nothing");
    fx.golden("json-reset.json", &["reset", "--json"], 0);
    let [v4, v6] = fx.netns.saves();
    assert!(!v4.contains("FWS-") && !v6.contains("FWS-"));
    assert!(v4.contains("198.51.100.0/24"), "the foreign rule stays");
}

#[test]
fn try_prints_its_golden_object() {
    if !kernel_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fw.rhai"), SCRIPT).unwrap();
    let run = Run::from(
        Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .current_dir(dir.path())
            .env("FWSCRIPT_IPTABLES", "nft")
            .args(["try", "--json", "fw.rhai"])
            .output()
            .unwrap(),
    )
    .expect(0);
    let value = golden_of("json-try.json", &run);
    assert_eq!(value["changed"], false, "the host is never written");
    let namespace: Value = serde_json::from_str::<Value>(&run.stdout).unwrap()["namespace"].clone();
    let name = namespace.as_str().unwrap();
    assert!(
        !Path::new("/run/netns").join(name).exists(),
        "the namespace is gone"
    );
}

/// A literal list long enough to be a set: ten hosts, `third` the third.
fn blocklist(third: &str) -> String {
    let hosts: Vec<String> = (1..=10)
        .map(|n| match n {
            3 => format!("\"{third}\""),
            n => format!("\"198.51.100.{n}\""),
        })
        .collect();
    format!("allow_tcp(22);\nblock([{}]);\n", hosts.join(", "))
}

#[test]
fn set_edits_are_reported_counted_and_seen_by_status() {
    if !kernel_available() {
        return;
    }
    let fx = Fixture::new();
    let script = fx.dir.path().join("sets.rhai");
    std::fs::write(&script, blocklist("198.51.100.3")).unwrap();
    let created = fx.run(&["apply", "--json", "sets.rhai"]).expect(0);
    let created: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(created["counts"]["create_set"], 1, "{created:#}");
    assert_eq!(created["sets"][0]["action"], "create_set");

    // One address of the list changed: no rule changes, one set edit, and
    // the report says so in every key a consumer reads: a change object
    // like a rule's, its entries in `sets`, and the counts.
    std::fs::write(&script, blocklist("198.51.100.33")).unwrap();
    let plan = fx.golden("json-plan-sets.json", &["plan", "--json", "sets.rhai"], 2);
    assert_eq!(plan["in_sync"], false);
    let only_the_set = |changes: &Value, name: &str| {
        assert_eq!(changes.as_array().unwrap().len(), 1, "{changes:#}");
        let change = &changes[0];
        assert_eq!(change["action"], "update_set", "{change:#}");
        assert_eq!(change["set"], name, "{change:#}");
        assert_eq!(change["count"], 2, "one added, one removed: {change:#}");
        assert_eq!(
            (&change["table"], &change["rule"]),
            (&Value::Null, &Value::Null)
        );
    };
    let name = plan["sets"][0]["set"].as_str().unwrap().to_string();
    only_the_set(&plan["changes"], &name);
    assert_eq!(plan["counts"]["update_set"], 1);
    let total: u64 = plan["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "{:#}", plan["counts"]);
    assert_eq!(
        plan["sets"][0]["added"],
        serde_json::json!(["198.51.100.33/32"])
    );
    assert_eq!(
        plan["sets"][0]["removed"],
        serde_json::json!(["198.51.100.3"])
    );
    let applied = fx.run(&["apply", "--json", "sets.rhai"]).expect(0);
    let applied: Value = serde_json::from_str(&applied.stdout).unwrap();
    assert_eq!(applied["changed"], true);
    assert_eq!(
        applied["sets"], plan["sets"],
        "what ran is what was planned"
    );
    assert_eq!(applied["counts"], plan["counts"]);

    // An entry deleted by hand: status sees the drift in JSON, and in text.
    fx.netns.sh(&format!("ipset del {name} 198.51.100.5"));
    let status = fx.golden("json-status-sets.json", &["status", "--json"], 0);
    let kernel = &status["kernel"];
    assert_eq!(kernel["in_sync"], false);
    assert_eq!(kernel["changes"].as_array().unwrap().len(), 1, "{kernel:#}");
    assert_eq!(kernel["changes"][0]["action"], "update_set");
    assert_eq!(kernel["changes"][0]["count"], 1, "one to add back");
    assert_eq!(kernel["counts"]["update_set"], 1, "{kernel:#}");
    assert_eq!(kernel["sets"][0]["set"], name.as_str());
    assert_eq!(
        kernel["sets"][0]["added"],
        serde_json::json!(["198.51.100.5/32"]),
        "{kernel:#}"
    );
    let text = fx.run(&["status"]).expect(0);
    assert!(
        text.stdout.contains("drifted: 1 change")
            && text
                .stdout
                .contains(&format!("+1 \u{2212}0 entries in set {name}"))
            && text.stdout.contains("+ 198.51.100.5"),
        "{text:#?}"
    );
}
