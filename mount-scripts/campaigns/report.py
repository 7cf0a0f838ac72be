#!/usr/bin/python3
"""Campaign results: one JSON line per run, and the markdown table.

  record(OUT, RUNDIR, APP, MODE, PLAN, N, FS)   append to OUT/results.jsonl, print the VERDICT line;
                                            3 when a self-test failed (its loss went
                                            unnoticed: "correct", or it never fired)
  not_applicable(OUT, RUNDIR, APP, MODE, PLAN, N, FS, WHY)   the same for a plan that
                                            cannot apply to the file system (not run)
  table(OUT, DOC)                           write OUT/results.md (and the table block in DOC)
"""
import json, os, re

import plans

BEGIN, END = "<!-- campaign:begin -->", "<!-- campaign:end -->"


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def app_said(rundir, app):
    """What the application reported during the fault phase, in a few words."""
    w = load(os.path.join(rundir, "workload.json")) or {}
    parts = []
    ph = w.get("phases", {})
    f, a = ph.get("fault", {}), ph.get("after", {})
    if f:
        n = f.get("ok", 0) + f.get("failed", 0)
        parts.append("fault window: %d/%d commits failed" % (f.get("failed", 0), n))
        if f.get("linger_ops"):
            parts.append("%d of them committed slowly, waiting for the fault to act" % f["linger_ops"])
    if a:
        n = a.get("ok", 0) + a.get("failed", 0)
        parts.append("after: %d/%d failed" % (a.get("failed", 0), n))
    errs = w.get("errors", {})
    if errs:
        top = sorted(errs.items(), key=lambda x: -x[1])[:2]
        parts.append("errors: " + "; ".join("%s (x%d)" % (e[:90], c) for e, c in top))
    if w.get("final_checkpoint") and w["final_checkpoint"] != "ok":
        parts.append("final CHECKPOINT: " + w["final_checkpoint"][:80])
    log = read(os.path.join(rundir, "server-log-summary.txt"))
    if log:
        parts.append("server log: " + log)
    alive = read(os.path.join(rundir, "alive.txt"))
    if alive:
        parts.append("server " + alive + " at the end")
    notes = read(os.path.join(rundir, "phase-notes"))
    if notes:
        parts.append(notes)
    return "; ".join(parts) or "nothing"


def monitor_line(rundir):
    s = read(os.path.join(rundir, "monitor", "summary.txt"))
    keep = [l for l in s.splitlines() if l.startswith(("injections:", "told:", "never told:"))]
    return " | ".join(keep)


def not_applicable(out, rundir, app, mode, plan, n, fs, why, config="safe"):
    r = {"app": app, "mode": mode, "plan": plan, "run": int(n), "fs": fs, "config": config, "fault": "",
         "description": plans.describe(plan), "app_reported": "not run: " + why, "restart": "ok",
         "monitor": "", "monitor_report": "", "rundir": rundir, "verdict": "not applicable",
         "categories": ["not applicable"], "reason": why}
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(r) + "\n")
    print("VERDICT app=%s mode=%s plan=%s run=%s fs=%s config=%s verdict=not_applicable reason=%s" % (
        app, mode, plan, n, fs, config, json.dumps(why)), flush=True)


def crash_said(rundir):
    """What `faultfs crash` undid, in a few words (crash.json, its --json report)."""
    c = load(os.path.join(rundir, "crash.json"))
    if not isinstance(c, dict):
        return ""
    c = c.get("report", c)
    keys = ("files_reverted", "bytes_reverted", "files_truncated", "names_undone", "torn_sectors_kept", "undo_errors")
    return "crash undid: " + ", ".join("%s %s" % (k.replace("_", " "), c[k]) for k in keys if k in c)


def record(out, rundir, app, mode, plan, n, fs="fuse", config="safe"):
    v = load(os.path.join(rundir, "verdict.json"))
    err = read(os.path.join(rundir, "error"))
    r = {"app": app, "mode": mode, "plan": plan, "run": int(n), "fs": fs, "config": config,
         "fault": read(os.path.join(rundir, "fault-applied.txt")),
         "description": read(os.path.join(rundir, "plan-description")),
         "app_reported": app_said(rundir, app),
         "restart": "failed" if os.path.exists(os.path.join(rundir, "restart-failed")) else "ok",
         "monitor": monitor_line(rundir),
         "monitor_report": os.path.join(rundir, "monitor", "report.html")
         if os.path.exists(os.path.join(rundir, "monitor", "report.html")) else "",
         "rundir": rundir}
    tamper = read(os.path.join(rundir, "tamper.txt"))
    if tamper:
        r["tamper"] = tamper
    model = read(os.path.join(rundir, "crash-model"))
    if model:
        r["crash_model"] = model
    crashed = crash_said(rundir)
    if crashed:
        r["crash"] = crashed
        r["app_reported"] = crashed + "; " + r["app_reported"]
    restart_log = read(os.path.join(rundir, "server-restart-summary.txt"))
    if restart_log:
        r["restart_log"] = restart_log
    w = load(os.path.join(rundir, "workload.json")) or {}
    f = w.get("phases", {}).get("fault", {})
    r["window_failed"] = "%d/%d" % (f.get("failed", 0), f.get("ok", 0) + f.get("failed", 0))
    if not err and w.get("inject_failed"):
        err = "the fault plan could not be applied (see %s/workload.json.hooks.log)" % rundir
    if err or not v:
        r["verdict"] = "campaign error"
        r["error"] = err or "no verdict (see %s/check.log)" % rundir
        r["categories"] = ["campaign error"]
    else:
        r["verdict"] = v["verdict"]
        r["categories"] = v["categories"]
        r["counts"] = {k: c for k, c in v["counts"].items() if c}
        r["acked_keys"] = v["acked_keys"]
        r["failed_ops"] = v["failed_ops"]
        r["notes"] = v.get("notes", [])
        r["examples"] = v.get("examples", {})
        r["fired"] = v.get("fired", {"total": 0})
        r["in_doubt_ops"] = v.get("in_doubt_ops", 0)
        if v.get("outcome"):
            r["outcome"] = v["outcome"]
        if v.get("corruption_reported"):
            r["corruption_reported"] = v["corruption_reported"]
    selftest_failed = is_failed_self_test(plan, config, r, fs)
    if selftest_failed:
        r["selftest_failed"] = True
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(r) + "\n")
    counts = " ".join("%s=%d" % (k.replace(" ", "_"), c) for k, c in r.get("counts", {}).items())
    fired = r.get("fired")
    fired_fields = " fired=%d injected=%s" % (fired["total"], ",".join(
        "%s:%d" % (k, c) for k, c in sorted(fired.items()) if k != "total") or "-") if fired else ""
    outcome = (" outcome=" + r["outcome"][0].replace(" ", "_")) if r.get("outcome") else ""
    print("VERDICT app=%s mode=%s plan=%s run=%s fs=%s config=%s verdict=%s acked=%s failed_ops=%s%s%s %s%s" % (
        app, mode, plan, n, fs, config, r["verdict"].replace(" ", "_"), r.get("acked_keys", "-"),
        r.get("failed_ops", "-"), fired_fields, outcome, counts,
        (" error=" + json.dumps(r["error"])) if "error" in r else ""), flush=True)
    print("  app reported: " + r["app_reported"], flush=True)
    if r.get("outcome") and len(r["outcome"]) > 2 and r["outcome"][2] != "ok":
        print("  " + r["outcome"][2], flush=True)
    if selftest_failed:
        print("SELF-TEST FAILED app=%s mode=%s plan=%s run=%s config=%s: %s" % (
            app, mode, plan, n, config, "the unsafe configuration lost nothing at the power loss"
            if plans.is_crash(plan) and r["verdict"] != "not exercised"
            else "the loss went unnoticed (verdict correct)" if r["verdict"] == "correct"
            else "it never fired: the checker was not tested"), flush=True)
        return 3
    return 0


def is_failed_self_test(plan, config, r, fs="fuse"):
    """A self-test whose loss went unnoticed or that never fired (pure): the
    self-test plans, and an unsafe configuration under power loss in FUSE
    mode, which must lose acknowledged keys (else the simulation did not
    bite). In block mode the file system's own commit may save it: a note."""
    if plan in plans.SELF_TESTS:
        return r["verdict"] in ("correct", "not exercised")
    if plans.is_crash(plan) and config == "unsafe" and r["verdict"] == "not exercised":
        return True
    if plans.is_crash(plan) and config == "unsafe" and r["verdict"] != "campaign error" and not plans.is_block(fs):
        return r["verdict"] == "not exercised" or r.get("outcome", ["survived"])[0] != "lost"
    return False


def fired_cell(rs):
    """How many runs the plan acted in, and what it did: '3/3: EIO x1 each'."""
    ran = [r for r in rs if "fired" in r]
    if not ran:
        return "-"
    texts = [plans.fired_text(r["fired"]) for r in ran]
    k = sum(1 for r in ran if r["fired"].get("total"))
    what = texts[0] + (" each" if len(ran) > 1 else "") if len(set(texts)) == 1 else "; ".join(texts)
    return "%d/%d: %s" % (k, len(rs), what)


def verdict_cell(rs):
    """Each verdict with k/N (the runs that had it) and its key counts per run:
    'correct 2/3 (153 keys); key not found 1/3 (101)'."""
    by = {}
    for r in rs:
        by.setdefault(r["verdict"], []).append(r)
    order = sorted(by, key=lambda v: (plans_severity(v), v))
    out = []
    for v in order:
        g = by[v]
        if v == "correct":
            detail = " (%s keys)" % ", ".join(str(r.get("acked_keys", 0)) for r in g)
        elif v in ("campaign error", "application unavailable", "not exercised", "not applicable"):
            detail = ""
        else:
            detail = " (%s)" % ", ".join(str(r.get("counts", {}).get(v, 0)) for r in g)
        extra = sorted({c for r in g for c in r.get("categories", []) if c not in (v, "correct")},
                       key=plans_severity)
        out.append("%s %d/%d%s%s" % (v, len(g), len(rs), detail, (" + " + ", ".join(extra)) if extra else ""))
    return "; ".join(out)


def plans_severity(category):
    order = ["campaign error", "application unavailable", "key corruption", "value corruption",
             "database corruption", "key not found", "old value", "false failure", "not exercised", "correct"]
    return order.index(category) if category in order else len(order)


def mode_label(r):
    return r["mode"] + ("" if r.get("config", "safe") == "safe" else " (%s)" % r["config"])


def power_loss_table(rs):
    """The "Power loss" table (pure): one row per run of a power-loss or
    corrupt plan: application, configuration, mode, file system, plan,
    acknowledged keys, lost (key not found + old value + corrupted), the
    verdict and the outcome."""
    lines = ["| application | config | mode | fs (crash model) | plan | acknowledged | lost | in doubt | verdict | outcome |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        if not (plans.is_crash(r["plan"]) or plans.is_corrupt(r["plan"])):
            continue
        counts = r.get("counts", {})
        lost = sum(counts.get(c, 0) for c in plans.LOST if c != "database corruption")
        outcome = r.get("outcome") or []
        lines.append("| %s | %s | %s | %s | `%s` | %s | %s | %s | %s | %s |" % (
            r["app"], r.get("config", "safe"), r["mode"],
            r.get("fs", "fuse") + (" (%s)" % r["crash_model"] if r.get("crash_model") else ""), r["plan"], r.get("acked_keys", "-"),
            lost if "acked_keys" in r else "-", r.get("in_doubt_ops", "-"),
            r["verdict"] + ("".join(" + " + c for c in r.get("categories", []) if c not in (r["verdict"], "correct"))),
            ("; ".join(outcome[:2]) if outcome else r.get("error", "")).replace("|", "\\|")))
    return "\n".join(lines) + "\n"


def load_results(out):
    rs = []
    with open(os.path.join(out, "results.jsonl")) as f:
        for line in f:
            if line.strip():
                rs.append(json.loads(line))
    return rs


def is_power_loss_row(r):
    return plans.is_crash(r["plan"]) or plans.is_corrupt(r["plan"])


def replace_block(doc, begin, end, text, heading="# Applications under faultfs"):
    """Puts TEXT between the markers BEGIN and END of DOC (appended when absent)."""
    old = read(doc) if os.path.exists(doc) else ""
    block = begin + "\n" + text + end
    if begin in old and end in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, old, flags=re.S)
    else:
        new = (old + "\n\n" if old else heading + "\n\n") + block + "\n"
    with open(doc, "w") as f:
        f.write(new if new.endswith("\n") else new + "\n")


def table(out, doc):
    rs = load_results(out)
    meta = read(os.path.join(out, "meta.txt"))
    generated = "Generated by `mount-scripts/campaign` from real runs (%s)." % meta.replace("\n", "; ")
    lines = [generated, "",
             "| application | mode | fault plan | fault fired (runs: what) | verdict k/N runs (keys) | what the application reported (run 1) |",
             "|---|---|---|---|---|---|"]
    groups = {}
    for r in rs:
        groups.setdefault((r["app"], mode_label(r), r["plan"], r.get("fs", "fuse")), []).append(r)
    for (app, mode, plan, fs), g in groups.items():
        said = g[0]["app_reported"].replace("|", "\\|")
        if len({r.get("window_failed") for r in g}) > 1:
            said = "commits failed in the fault window, per run: %s; run 1: %s" % (
                ", ".join(r.get("window_failed", "?") for r in g), said)
        if g[0].get("restart") == "failed" or g[0].get("restart_log"):
            said += "; restart: " + (g[0].get("restart_log") or "failed").replace("|", "\\|")
        on = "" if fs == "fuse" else " on %s" % fs     # block mode: the file system
        lines.append("| %s | %s | `%s`%s | %s | %s | %s |" % (app, mode, plan, on, fired_cell(g), verdict_cell(g), said))
    lines.append("")
    lines.append("Fault plans: " + "; ".join(sorted({"`%s`: %s" % (r["plan"], r["description"]) for r in rs})) + ".")
    power = [r for r in rs if is_power_loss_row(r)]
    if power:
        lines += ["", "Power loss and silent corruption, one row per run:", "", power_loss_table(power)]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    if doc:
        if any(not is_power_loss_row(r) for r in rs):
            replace_block(doc, BEGIN, END, text)
        if power:
            power_loss_doc(doc, [out])
    print(text)


PL_BEGIN, PL_END = "<!-- power-loss:begin -->", "<!-- power-loss:end -->"


def power_loss_doc(doc, outs):
    """The power-loss block of DOC from the results of one or more campaigns
    (OUT folders): their commands, then one row per run."""
    rs, commands = [], []
    for out in outs:   # (each command on its own line)
        meta = read(os.path.join(out, "meta.txt"))
        # (runs recorded before results named their crash model: the command line says it)
        model = "journal" if "--crash-model journal" in meta else "posix"
        rs += [dict({"crash_model": model} if plans.is_crash(r["plan"]) else {}, **r)
               for r in load_results(out) if is_power_loss_row(r)]
        commands.append("- " + meta.replace("\n", "; "))
    text = ("Generated by `mount-scripts/campaign` from real runs of these commands:\n\n%s\n\n"
            % "\n".join(commands) + power_loss_table(rs))
    replace_block(doc, PL_BEGIN, PL_END, text)
    return text


if __name__ == "__main__":
    import sys
    # report.py power-loss-doc DOC OUT...: the power-loss block of DOC from several campaigns.
    if len(sys.argv) >= 4 and sys.argv[1] == "power-loss-doc":
        print(power_loss_doc(sys.argv[2], sys.argv[3:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
