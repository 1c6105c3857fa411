#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Ansible module for fwscript: apply a firewall script, reset, or confirm.

It runs the `fwscript` binary on the managed host and reads its JSON output
(docs/json.md, schema 1); it never scrapes text.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fwscript
short_description: Apply a fwscript firewall (iptables and ip6tables from a Rhai script)
description:
  - Makes the host's iptables and ip6tables rules match a fwscript script with the
    smallest change, or removes everything fwscript owns.
  - Reads the JSON output of C(fwscript) (schema 1); needs the C(fwscript) binary on the
    managed host.
  - Check mode runs C(fwscript plan) (or C(reset --dry-run)) and reports whether the
    kernel would change, writing nothing. Diff mode shows the plan, one line per change.
  - A failure says what failed and whether the kernel was changed.
options:
  script:
    description: Path of the firewall script on the managed host. Required with C(state=applied).
    type: path
  state:
    description:
      - C(applied) makes the kernel match I(script).
      - C(reset) removes everything fwscript owns and puts back the policies it changed.
      - C(confirmed) keeps what an earlier apply with I(confirm) wrote (C(fwscript confirm)).
    type: str
    choices: [applied, reset, confirmed]
    default: applied
  confirm:
    description:
      - Seconds within which a later task with C(state=confirmed) must run, else the rules
        from before come back by themselves (C(apply --confirm SECS)).
    type: int
  force:
    description: Apply even when the lockout guard refuses (C(--force)).
    type: bool
    default: false
  state_dir:
    description: fwscript's state folder (C(--state-dir)); fwscript's default is /var/lib/fwscript.
    type: path
  executable:
    description: The fwscript binary.
    type: path
    default: fwscript
notes:
  - Runs as root on the managed host (C(become: true)).
"""

EXAMPLES = r"""
- name: Firewall
  become: true
  fwscript:
    script: /etc/fwscript/firewall.rhai

- name: Firewall, rolled back unless confirmed within 2 minutes
  become: true
  fwscript:
    script: /etc/fwscript/firewall.rhai
    confirm: 120

- name: Still reachable? Keep it.
  become: true
  fwscript:
    state: confirmed

- name: Remove fwscript's rules
  become: true
  fwscript:
    state: reset
"""

RETURN = r"""
changed:
  description: Whether the kernel was written (in check mode, whether it would be).
  type: bool
  returned: always
in_sync:
  description: Whether the kernel already matched.
  type: bool
  returned: when fwscript reported it
changes:
  description: The change objects of docs/json.md, in the order they run.
  type: list
  returned: when fwscript reported them
counts:
  description: How many changes of each action.
  type: dict
  returned: when fwscript reported them
warnings_fwscript:
  description: fwscript's warning objects (each with a kind); their messages are Ansible warnings too.
  type: list
  returned: when fwscript reported them
fwscript:
  description: The whole JSON object fwscript printed.
  type: dict
  returned: when fwscript printed one
"""

import json

from ansible.module_utils.basic import AnsibleModule

SCHEMA = 1


def run_fwscript(module, args):
    """Runs fwscript; returns (rc, the JSON object or None, stderr)."""
    command = [module.params["executable"]]
    if module.params["state_dir"]:
        command += ["--state-dir", module.params["state_dir"]]
    command += args
    rc, out, err = module.run_command(command)
    lines = [line for line in out.splitlines() if line.strip()]
    if len(lines) != 1:
        return rc, None, err or out
    try:
        report = json.loads(lines[0])
    except ValueError:
        return rc, None, err or out
    return rc, report, err


def describe_change(change):
    """One line of the diff: `+ ipv4 filter FWS-INPUT-ALLOW 1: … [fw.rhai:2:1]`."""
    action = change.get("action")
    sign = {"insert_rule": "+", "insert_hook": "+", "create_chain": "+",
            "delete_rule": "-", "delete_hook": "-", "delete_chain": "-",
            "move_hook": "~", "set_policy": "~"}.get(action, "~")
    where = "%s %s %s" % (change.get("family"), change.get("table"), change.get("chain"))
    rule = change.get("rule") or {}
    policy = change.get("policy")
    if policy:
        what = "policy %s -> %s" % (policy.get("from"), policy.get("to"))
        origin = policy.get("origin")
    elif action in ("create_chain", "delete_chain"):
        what = action.replace("_", " ")
        origin = None
    else:
        position = change.get("position")
        placement = change.get("placement")
        at = str(position) if position is not None else (placement or "")
        what = "%s: %s" % (at, rule.get("text", ""))
        origin = rule.get("origin")
    line = "%s %s %s" % (sign, where, what)
    if change.get("why"):
        line += " (%s)" % change["why"]
    if origin:
        line += "  [%s:%s:%s]" % (origin["file"], origin["line"], origin["col"])
    return line


def failure_message(report, stderr, what):
    """What failed, and the truth about the kernel."""
    if report is None:
        return "%s failed and printed no JSON: %s; nothing is known to have changed" % (
            what, (stderr or "").strip() or "no output")
    error = report.get("error") or {}
    message = error.get("message", "unknown error")
    if error.get("file"):
        message = "%s:%s:%s: %s" % (error["file"], error.get("line"), error.get("col"), message)
    if error.get("hint"):
        message += " (hint: %s)" % error["hint"]
    if report.get("changed"):
        return "%s failed: %s; the kernel WAS changed before the failure" % (what, message)
    return "%s failed: %s; nothing was changed" % (what, message)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            script=dict(type="path"),
            state=dict(type="str", default="applied", choices=["applied", "reset", "confirmed"]),
            confirm=dict(type="int"),
            force=dict(type="bool", default=False),
            state_dir=dict(type="path"),
            executable=dict(type="path", default="fwscript"),
        ),
        required_if=[("state", "applied", ["script"])],
        supports_check_mode=True,
    )
    params = module.params
    state = params["state"]
    if params["confirm"] is not None and params["confirm"] <= 0:
        module.fail_json(msg="confirm must be a number of seconds above 0; nothing was changed",
                         changed=False)

    if state == "applied":
        if module.check_mode:
            args, what = ["plan", "--json", params["script"]], "fwscript plan"
        else:
            args = ["apply", "--json"]
            if params["confirm"] is not None:
                args += ["--confirm", str(params["confirm"])]
            if params["force"]:
                args.append("--force")
            args.append(params["script"])
            what = "fwscript apply"
    elif state == "reset":
        if module.check_mode:
            args, what = ["reset", "--dry-run", "--json"], "fwscript reset --dry-run"
        else:
            args, what = ["reset", "--yes", "--json"], "fwscript reset"
    else:
        if module.check_mode:
            module.exit_json(changed=False, msg="check mode: fwscript confirm not run")
        args, what = ["confirm", "--json"], "fwscript confirm"

    rc, report, stderr = run_fwscript(module, args)
    if report is None or "error" in report or report.get("schema") != SCHEMA:
        changed = bool(report and report.get("changed"))
        if report is not None and report.get("schema") != SCHEMA and "error" not in report:
            msg = "%s printed JSON schema %r; this module reads schema %d; nothing is known to " \
                  "have changed" % (what, report.get("schema"), SCHEMA)
        else:
            msg = failure_message(report, stderr, what)
        module.fail_json(msg=msg, changed=changed, rc=rc, fwscript=report, stderr=stderr)

    for warning in report.get("warnings", []):
        module.warn("fwscript: %s" % warning.get("message", warning.get("kind")))

    if state == "confirmed":
        # The kernel is not written, but what it holds is kept from now on.
        changed = True
    elif module.check_mode:
        changed = report.get("in_sync") is False
    else:
        changed = bool(report.get("changed"))

    result = dict(
        changed=changed,
        fwscript=report,
        warnings_fwscript=report.get("warnings", []),
    )
    for key in ("in_sync", "changes", "counts", "skipped", "confirm", "confirmed"):
        if key in report:
            result[key] = report[key]
    changes = report.get("changes") or []
    if module._diff and changes:
        result["diff"] = dict(prepared="\n".join(describe_change(c) for c in changes) + "\n")
    if state == "confirmed":
        result["msg"] = "confirmed: the rules applied stay"
    elif changes:
        verb = "would change" if module.check_mode else "changed"
        result["msg"] = "%s the firewall: %d changes" % (verb, len(changes))
    else:
        result["msg"] = "in sync: no changes"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
