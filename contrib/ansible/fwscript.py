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
    kernel would change, writing nothing. Diff mode shows the plan, one line per change:
    the edits of fwscript's ipsets (address lists) first, then the rule changes.
  - C(state=confirmed) is idempotent. An apply with I(confirm) that had nothing to change
    arms no timer, so there is nothing to confirm; when C(fwscript status) shows no confirm
    waiting and the kernel in sync with the last apply, the task is ok and unchanged.
  - A failure says what failed and whether the kernel was changed.
options:
  script:
    description: Path of the firewall script on the managed host. Required with C(state=applied).
    type: path
  state:
    description:
      - C(applied) makes the kernel match I(script).
      - C(reset) removes everything fwscript owns and puts back the policies it changed.
      - C(confirmed) keeps what an earlier apply with I(confirm) wrote (C(fwscript confirm));
        ok and unchanged when no confirm is waiting and the kernel holds the last apply.
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
  description: The change objects of docs/json.md (rules, chains, policies), in the order they run.
  type: list
  returned: when fwscript reported them
sets:
  description: The edits of fwscript's ipsets (docs/json.md, "The set edits").
  type: list
  returned: when fwscript reported them
counts:
  description: How many changes of each action, set edits included.
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


def describe_set(edit):
    """The lines of one set edit: `~ ipv4 ipset fws-…: +1 -1 entries  [fw.rhai:2:1]`,
    then each entry added or removed when there are few."""
    action = edit.get("action")
    where = "%s ipset %s" % (edit.get("family"), edit.get("set"))
    added, removed = edit.get("added") or [], edit.get("removed") or []
    if action == "create_set":
        line = "+ %s: create, %s entries" % (where, edit.get("entries"))
    elif action == "update_set":
        line = "~ %s: +%d -%d entries" % (where, len(added), len(removed))
    elif action == "recreate_set":
        line = "~ %s: recreate (%s), %s entries" % (where, edit.get("why"), edit.get("entries"))
    elif action == "destroy_set":
        line = "- %s: destroy (%s entries)" % (where, edit.get("entries"))
    else:
        line = "! %s: %s %s" % (where, action, edit.get("found", ""))
    source = edit.get("source") or {}
    if source.get("list"):
        line += "  [%s]" % source["list"]
    elif source.get("call"):
        call = source["call"]
        line += "  [%s:%s:%s]" % (call["file"], call["line"], call["col"])
    lines = [line]
    # Like `fwscript plan`: the entries themselves only when they are few.
    if len(added) + len(removed) <= 10:
        lines += ["    - %s" % entry for entry in removed]
        lines += ["    + %s" % entry for entry in added]
    return lines


def how_many(changes, sets):
    """`3 changes`, `1 change (1 set edit)`."""
    total = len(changes) + len(sets)
    text = "%d change%s" % (total, "" if total == 1 else "s")
    if sets:
        text += " (%d set edit%s)" % (len(sets), "" if len(sets) == 1 else "s")
    return text


def nothing_to_confirm(module, what):
    """`state: confirmed` with no confirm waiting: ok when the kernel holds the
    last apply (an apply with nothing to change arms no timer), else a failure
    that says why. Exits either way; returns when a confirm is waiting."""
    rc, status, stderr = run_fwscript(module, ["status", "--json"])
    if status is None or "error" in status or status.get("schema") != SCHEMA:
        module.fail_json(msg=failure_message(status, stderr, "fwscript status"),
                         changed=False, rc=rc, fwscript=status, stderr=stderr)
    pending = status.get("pending_confirm")
    if pending:
        return pending
    kernel = status.get("kernel") or {}
    applied = status.get("applied") or {}
    # Only a script's own write is something to keep; a rollback by the
    # timer ("confirm-timer") means the confirm came too late.
    if kernel.get("in_sync") is True and applied.get("command") in ("apply", "watch"):
        module.exit_json(
            changed=False, in_sync=True, fwscript=status,
            msg="nothing to confirm: no confirm is waiting and the kernel holds what `%s` "
                "applied" % applied.get("script"))
    if applied.get("command") == "confirm-timer":
        why = "the apply was not confirmed in time and the rules from before it are back"
    elif not applied:
        why = "nothing was applied with this state folder"
    elif kernel.get("in_sync") is False:
        why = "the kernel no longer holds what `%s` applied (drift)" % applied.get("script")
    else:
        why = "the last write was `%s` by `fwscript %s`" % (applied.get("script"),
                                                           applied.get("command"))
    problems = "; ".join("%s: %s" % (p.get("part"), p.get("message"))
                         for p in status.get("problems") or [])
    if problems:
        why += " (%s)" % problems
    module.fail_json(msg="%s failed: there is nothing to confirm: %s; nothing was changed"
                     % (what, why), changed=False, fwscript=status)


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
        what = "fwscript confirm"
        pending = nothing_to_confirm(module, what)
        if module.check_mode:
            module.exit_json(changed=True, msg="check mode: would confirm the apply of `%s`"
                             % pending.get("script"))
        args = ["confirm", "--json"]

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
    for key in ("in_sync", "changes", "sets", "counts", "skipped", "confirm", "confirmed"):
        if key in report:
            result[key] = report[key]
    # Set edits are change objects too (`set` names the ipset); their
    # entries are in `sets`, which the diff shows instead.
    changes = [c for c in report.get("changes") or [] if c.get("set") is None]
    sets = report.get("sets") or []
    if module._diff and (changes or sets):
        # As fwscript runs them: sets before the rules that match them.
        lines = [line for edit in sets for line in describe_set(edit)]
        lines += [describe_change(c) for c in changes]
        result["diff"] = dict(prepared="\n".join(lines) + "\n")
    if state == "confirmed":
        result["msg"] = "confirmed: the rules applied stay"
    elif changes or sets:
        verb = "would change" if module.check_mode else "changed"
        result["msg"] = "%s the firewall: %s" % (verb, how_many(changes, sets))
    elif report.get("in_sync") is False:
        # Never "in sync" for a kernel that was not: say what is known.
        result["msg"] = "%s: the kernel was not in sync" % what
    else:
        result["msg"] = "in sync: no changes"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
