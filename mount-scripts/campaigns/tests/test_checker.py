"""Unit tests of the campaign checker (workload.py classify), the plans'
fired counts (plans.py) and the self-test rule (report.py record).
Standard library only:

    python3 -m unittest discover -s mount-scripts/campaigns/tests -v
    (or python3 -m pytest mount-scripts/campaigns/tests)
"""
import json, os, subprocess, sys, tempfile, unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
CAMPAIGNS = os.path.dirname(HERE)
sys.path.insert(0, CAMPAIGNS)

import plans     # noqa: E402
import report    # noqa: E402
import workload  # noqa: E402
from workload import classify, classify_key, make_value  # noqa: E402


def value(key, version, seed=0):
    import random
    return make_value(key, version, random.Random("%s/%d/%d" % (key, version, seed)))


def with_wrong_checksum(v):
    key, version, nonce, checksum = v.rstrip(".").split("|")
    return "|".join([key, version, "f" * len(nonce), checksum]).ljust(len(v), ".")


def op(key, version, ok=True, seed=0):
    return {"key": key, "version": version, "value": value(key, version, seed), "ok": ok}


# Per-key histories: k1 written twice (both acknowledged); k2 acknowledged
# once, then a failed update; k3 never acknowledged.
K1 = [op("k1", 1), op("k1", 2)]
K2 = [op("k2", 1), op("k2", 2, ok=False)]
K3 = [op("k3", 1, ok=False)]
ALL_RIGHT = {"k1": K1[1]["value"], "k2": K2[0]["value"]}


class ClassifyKey(unittest.TestCase):
    CASES = [
        # (name, key, history, what the application returned, category)
        ("last acknowledged value", "k1", K1, K1[1]["value"], "correct"),
        ("last acknowledged value as bytes", "k1", K1, K1[1]["value"].encode(), "correct"),
        ("never acknowledged, absent", "k3", K3, None, "correct"),
        ("acknowledged, absent", "k1", K1, None, "key not found"),
        ("an older acknowledged value", "k1", K1, K1[0]["value"], "old value"),
        ("a failed update overwritten by a later acknowledged one",
         "k1", [op("k1", 1), op("k1", 2, ok=False), op("k1", 3)], op("k1", 2, ok=False)["value"], "old value"),
        ("a write told failed is present", "k2", K2, K2[1]["value"], "false failure"),
        ("a write never acknowledged is present", "k3", K3, K3[0]["value"], "false failure"),
        ("another key's value", "k1", K1, value("k2", 1), "key corruption"),
        ("garbage", "k1", K1, "x" * 300, "value corruption"),
        ("bytes that are not UTF-8", "k1", K1, b"\xff\xfe" * 150, "value corruption"),
        ("the checksum does not match", "k1", K1, with_wrong_checksum(K1[1]["value"]), "value corruption"),
        ("well-formed, this key, but never written", "k1", K1, value("k1", 7), "value corruption"),
        ("a value truncated", "k1", K1, K1[1]["value"][:20], "value corruption"),
    ]

    def test_every_category(self):
        for name, key, history, got, want in self.CASES:
            with self.subTest(name):
                self.assertEqual(classify_key(key, history, got), want)

    def test_the_cases_cover_every_per_key_category(self):
        per_key = {"correct", "key not found", "old value", "false failure", "key corruption", "value corruption"}
        self.assertEqual({c[4] for c in self.CASES}, per_key)


# A run-level history: one key per kind of defect, so that defects combine.
RUN = {"kc": [op("kc", 1)], "kv": [op("kv", 1)], "kn": [op("kn", 1)],
       "ko": [op("ko", 1), op("ko", 2)], "kf": [op("kf", 1), op("kf", 2, ok=False)], "kx": [op("kx", 1, ok=False)]}
RIGHT = {"kc": RUN["kc"][0]["value"], "kv": RUN["kv"][0]["value"], "kn": RUN["kn"][0]["value"],
         "ko": RUN["ko"][1]["value"], "kf": RUN["kf"][0]["value"]}


def reading():
    return {"unavailable": None, "data": dict(RIGHT), "lookup_errors": {}, "integrity": [], "fired": {"total": 1}}


# How to produce each run category, applied to a reading (they touch different keys).
DEFECTS = {
    "application unavailable": lambda r: r.update(unavailable="restart/open failed: Error: boom"),
    "key corruption": lambda r: r["data"].update(kc=value("kv", 1)),
    "value corruption": lambda r: r["data"].update(kv="garbage"),
    "database corruption": lambda r: r["integrity"].append("row 1 missing from index kv_v"),
    "key not found": lambda r: r["data"].pop("kn"),
    "old value": lambda r: r["data"].update(ko=RUN["ko"][0]["value"]),
    "false failure": lambda r: r["data"].update(kf=RUN["kf"][1]["value"]),
    "not exercised": lambda r: r.update(fired={"total": 0}),
    "correct": lambda r: None,
}


def run_verdict(*defects, fired=True):
    r = reading()
    for d in defects:
        DEFECTS[d](r)
    return classify(RUN, r, r.pop("fired") if fired else None)


class Classify(unittest.TestCase):
    def test_every_run_category(self):
        self.assertEqual(set(DEFECTS), set(workload.CATEGORIES))
        for want in DEFECTS:
            with self.subTest(want):
                v = run_verdict(want)
                self.assertEqual(v["verdict"], want)
                self.assertEqual(v["categories"], [want])
                self.assertEqual((v["acked_keys"], v["failed_ops"]), (5, 2))

    def test_counts(self):
        v = run_verdict("key not found")
        self.assertEqual((v["counts"]["key not found"], v["counts"]["correct"]), (1, 5))
        v = run_verdict("application unavailable")
        self.assertEqual((v["counts"]["application unavailable"], v["counts"]["correct"]), (5, 0))
        self.assertIn("boom", v["examples"]["application unavailable"])

    def test_no_fault_planned_is_correct_without_firing(self):
        self.assertEqual(run_verdict("not exercised", fired=False)["verdict"], "correct")

    def test_a_fault_that_did_not_fire_is_never_correct(self):
        self.assertEqual(run_verdict("not exercised")["verdict"], "not exercised")
        # ...and damage without the fault is still reported, worst first.
        v = run_verdict("not exercised", "key not found")
        self.assertEqual(v["categories"], ["key not found", "not exercised"])

    def test_integrity_failure_is_corruption_even_when_every_key_reads_back(self):
        v = run_verdict("database corruption")
        self.assertEqual((v["verdict"], v["counts"]["correct"]), ("database corruption", 6))

    def test_a_lookup_that_errors_and_an_unknown_key_are_key_corruption(self):
        r = reading()
        r["lookup_errors"]["kn"] = "DatabaseError: malformed"
        v = classify(RUN, r, None)
        self.assertEqual((v["verdict"], v["counts"]["key corruption"]), ("key corruption", 1))
        r = reading()
        r["data"]["k9"] = value("k9", 1)
        v = classify(RUN, r, None)
        self.assertEqual((v["verdict"], v["counts"]["key corruption"]), ("key corruption", 1))

    def test_worst_of(self):
        """Every pair of categories together: the verdict is the worse one (SEVERITY order)."""
        order = workload.SEVERITY + ["correct"]
        for i, worse in enumerate(order):
            for better in order[i + 1:]:
                with self.subTest(worse=worse, better=better):
                    v = run_verdict(better, worse)
                    self.assertEqual(v["verdict"], worse)
                    if worse != "application unavailable" and better != "correct":
                        self.assertEqual(v["categories"], [worse, better])
        v = run_verdict(*DEFECTS)
        self.assertEqual(v["verdict"], "application unavailable")
        v = run_verdict(*(d for d in DEFECTS if d != "application unavailable"))
        self.assertEqual(v["categories"], workload.SEVERITY[1:])


class Plans(unittest.TestCase):
    def event(self, action, errno=0, name=None, rule="r1"):
        return json.dumps({"rule": rule, "action": action, "op": "writeback", "errno": errno, "errno_name": name})

    def test_fired_counts_injections_with_an_errno_and_writes_dropped_or_stalled(self):
        lines = [self.event("capacity", rule="-"),                       # capacity set: not the plan acting
                 self.event("fail", 5, "EIO"), self.event("fail", 5, "EIO"),
                 self.event("fail", 28, "ENOSPC", rule="capacity"),       # the capacity model's ENOSPC
                 self.event("drop"), self.event("stall"), self.event("release"),
                 self.event("fail", 0), "not json", ""]
        self.assertEqual(plans.fired(lines), {"total": 5, "EIO": 2, "ENOSPC": 1, "drop": 1, "stall": 1})
        self.assertEqual(plans.fired([self.event("capacity", rule="-"), self.event("capacity", rule="-")]),
                         {"total": 0})
        self.assertEqual(plans.fired_text({"total": 2, "EIO": 1, "drop": 1}), "EIO x1, drop x1")
        self.assertEqual(plans.fired_text({"total": 0}), "nothing")

    def test_capacity_leaves_far_less_than_the_window_writes(self):
        for window in (0, 12_000, 45_000, 10 ** 9):
            h = plans.capacity_headroom(window)
            self.assertTrue(4096 <= h <= 16384, (window, h))
            if window >= 40_960:
                self.assertLessEqual(h, window // 10)

    def test_lines(self):
        self.assertEqual(plans.lines("wb-eio-data", "sqlite/test.db"), ["fail writeback EIO count=1 path=sqlite/test.db"])
        self.assertEqual(plans.lines("baseline", "x"), [])
        self.assertEqual(plans.lines("custom:fail fsync EIO", "x"), ["fail fsync EIO"])
        with self.assertRaises(plans.UnknownPlan):
            plans.lines("nosuch", "x")
        self.assertEqual(plans.lines("selftest-drop", "x", {"selftest-drop": "delay writeback 1ms"}),
                         ["delay writeback 1ms"])
        self.assertFalse(plans.fault_expected("baseline"))
        self.assertTrue(all(plans.fault_expected(p) for p in plans.PLANS if p != "baseline"))


class SelfTestRule(unittest.TestCase):
    """report.py record: a self-test whose loss went unnoticed fails the campaign."""

    def record(self, plan, verdict, fired):
        with tempfile.TemporaryDirectory() as out:
            rundir = os.path.join(out, "run1")
            os.mkdir(rundir)
            with open(os.path.join(rundir, "verdict.json"), "w") as f:
                json.dump({"verdict": verdict, "categories": [verdict], "counts": {verdict: 1},
                           "acked_keys": 10, "failed_ops": 0, "fired": fired}, f)
            with mock.patch("sys.stdout"):
                status = report.record(out, rundir, "sqlite", "wal", plan, "1")
            with open(os.path.join(out, "results.jsonl")) as f:
                r = json.loads(f.readline())
            return status, r

    def test_a_self_test_that_fired_and_came_out_correct_fails(self):
        status, r = self.record("selftest-drop", "correct", {"total": 40, "drop": 40})
        self.assertEqual(status, 3)
        self.assertTrue(r["selftest_failed"])
        self.assertEqual(self.record("selftest-seeded", "correct", {"total": 1, "tampered": 1})[0], 3)

    def test_a_self_test_that_never_fired_fails(self):
        self.assertEqual(self.record("selftest-drop", "not exercised", {"total": 0})[0], 3)

    def test_a_caught_loss_passes_and_other_plans_never_fail(self):
        for plan, verdict in [("selftest-drop", "key not found"), ("selftest-drop", "application unavailable"),
                              ("wb-eio", "correct"), ("wb-eio", "not exercised"), ("baseline", "correct")]:
            with self.subTest(plan=plan, verdict=verdict):
                status, r = self.record(plan, verdict, {"total": 1})
                self.assertEqual(status, 0)
                self.assertEqual(r["fired"], {"total": 1})


class CheckerErrors(unittest.TestCase):
    """The checker's own failure is an error (no verdict); the application's crash is a verdict."""

    def args(self, tmp):
        return mock.Mock(out=os.path.join(tmp, "verdict.json"), app="sqlite", mode="wal", data=tmp,
                         acks=os.path.join(tmp, "acks.jsonl"), port=0, read_timeout=60)

    def test_the_application_crashing_while_reading_is_unavailable(self):
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch("subprocess.run", return_value=subprocess.CompletedProcess([], -6, "", "Assertion failed")):
            r = workload.read_in_child(self.args(tmp))
        self.assertIn("SIGABRT", r["unavailable"])

    def test_the_reader_failing_is_a_checker_error(self):
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch("subprocess.run", return_value=subprocess.CompletedProcess([], 1, "", "NameError: x")):
            with self.assertRaises(workload.CheckerError):
                workload.read_in_child(self.args(tmp))

    def test_check_exits_non_zero_without_a_verdict_when_it_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "verdict.json")
            r = subprocess.run([sys.executable, os.path.join(CAMPAIGNS, "workload.py"), "check", "--app", "sqlite",
                                "--data", tmp, "--acks", os.path.join(tmp, "missing.jsonl"), "--out", out],
                               capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertFalse(os.path.exists(out))


class SQLiteEndToEnd(unittest.TestCase):
    """workload.py check on a real SQLite file (no mount): integrity_check failures are corruption."""

    def make(self, tmp, corrupt_index):
        import sqlite3
        os.makedirs(os.path.join(tmp, "sqlite"))
        c = sqlite3.connect(os.path.join(tmp, "sqlite", "test.db"), isolation_level=None)
        c.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        c.execute("CREATE INDEX kv_v ON kv(v)")
        with open(os.path.join(tmp, "acks.jsonl"), "w") as f:
            for h in (K1, K2):
                for x in h:
                    f.write(json.dumps(x) + "\n")
        for k, v in ALL_RIGHT.items():
            c.execute("INSERT INTO kv VALUES(?, ?)", (k, v))
        if corrupt_index:
            # The index now claims another column: its entries no longer match the rows.
            c.execute("PRAGMA writable_schema=ON")
            c.execute("UPDATE sqlite_schema SET sql='CREATE INDEX kv_v ON kv(k)' WHERE name='kv_v'")
        c.close()

    def check(self, tmp, plan="baseline"):
        out = os.path.join(tmp, "verdict.json")
        r = subprocess.run([sys.executable, os.path.join(CAMPAIGNS, "workload.py"), "check", "--app", "sqlite",
                            "--mode", "wal", "--data", tmp, "--acks", os.path.join(tmp, "acks.jsonl"), "--out", out,
                            "--plan", plan, "--events", os.path.join(tmp, "no-events.jsonl")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            return json.load(f)

    def test_a_sound_database_is_correct(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make(tmp, corrupt_index=False)
            v = self.check(tmp)
            self.assertEqual((v["verdict"], v["counts"]["correct"]), ("correct", 2))

    def test_a_fault_that_never_fired_is_not_exercised(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make(tmp, corrupt_index=False)
            v = self.check(tmp, plan="wb-eio")
            self.assertEqual((v["verdict"], v["fired"]["total"]), ("not exercised", 0))

    def test_an_integrity_failure_is_database_corruption(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make(tmp, corrupt_index=True)
            v = self.check(tmp)
            self.assertEqual(v["verdict"], "database corruption")
            self.assertIn("missing from index", " ".join(v["examples"]["database corruption"]))


if __name__ == "__main__":
    unittest.main()
