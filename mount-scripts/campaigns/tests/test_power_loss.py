"""Unit tests of the power-loss and silent-corruption campaigns' pure parts:
the plans (lines per mode, where they apply), the seeded crash point, the
`faultfs crash` arguments, the acknowledgement log's in-doubt operations, the
verdicts (lost / survived, detected / silent loss), the unsafe self-test rule,
the --unsafe command line and the power-loss table. No root, no mount:

    python3 -m unittest discover -s mount-scripts/campaigns/tests -v
"""
import json, os, random, sys, tempfile, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import driver    # noqa: E402
import plans     # noqa: E402
import report    # noqa: E402
import workload  # noqa: E402
from apps import APPS  # noqa: E402


def value(key, version):
    return workload.make_value(key, version, random.Random("%s/%d" % (key, version)))


def rec(key, version, ok=True, **extra):
    return dict({"key": key, "version": version, "value": value(key, version), "ok": ok}, **extra)


class Plans(unittest.TestCase):
    def test_the_crash_plans_have_no_control_line(self):
        self.assertEqual(plans.lines("power-loss", "x"), [])
        self.assertEqual(plans.lines("power-loss-torn", "x", block=True), [])
        self.assertTrue(plans.is_crash("power-loss") and plans.is_crash("power-loss-torn"))
        self.assertFalse(plans.is_crash("corrupt-read") or plans.is_crash("wb-eio"))

    def test_corrupt_lines_target_the_data_files_in_each_mode(self):
        self.assertEqual(plans.lines("corrupt-write", "sqlite/test.db"),
                         ["corrupt write bytes=1 pattern=flip count=1 path=sqlite/test.db"])
        self.assertEqual(plans.lines("corrupt-read", "sqlite/test.db"),
                         ["corrupt read bytes=1 pattern=flip count=1 path=sqlite/test.db"])
        self.assertEqual(plans.lines("corrupt-read", "sqlite/test.db", block=True),
                         ["corrupt read bytes=1 pattern=flip count=1 file=sqlite/test.db"])

    def test_every_new_plan_is_known_described_and_must_fire(self):
        for plan in ("power-loss", "power-loss-torn", "corrupt-read", "corrupt-write"):
            with self.subTest(plan):
                self.assertTrue(plans.known(plan))
                self.assertTrue(plans.describe(plan))
                self.assertTrue(plans.fault_expected(plan))

    def test_they_apply_in_both_modes_but_corruption_not_on_btrfs(self):
        for fs in ("fuse", "ext4", "ext4-journal", "xfs", "btrfs"):
            for plan in ("power-loss", "power-loss-torn"):
                self.assertIsNone(plans.not_applicable(plan, fs), (plan, fs))
        for plan in ("corrupt-read", "corrupt-write"):
            for fs in ("fuse", "ext4", "xfs"):
                self.assertIsNone(plans.not_applicable(plan, fs), (plan, fs))
            self.assertIn("logically", plans.not_applicable(plan, "btrfs"))
        # The older plans keep their modes.
        self.assertIsNotNone(plans.not_applicable("wb-eio", "ext4"))
        self.assertIsNotNone(plans.not_applicable("blk-data-eio", "fuse"))

    def test_corrupt_read_is_armed_at_the_restart_in_fuse_mode_only(self):
        self.assertTrue(plans.armed_at_restart("corrupt-read", block=False))
        self.assertFalse(plans.armed_at_restart("corrupt-read", block=True))
        self.assertFalse(plans.armed_at_restart("corrupt-write", block=False))
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(plans.apply(tmp, "corrupt-read", "x", tmp, 1000), ["(armed when the application restarts)"])

    def test_a_crash_and_a_corruption_are_the_plan_acting(self):
        events = [json.dumps({"action": "crash", "files_reverted": 2}),
                  json.dumps({"action": "corrupt", "path": "/test.db", "offset": 4096, "bytes": 1}),
                  json.dumps({"action": "settings"})]
        self.assertEqual(plans.fired(events), {"total": 2, "crash": 1, "corrupt": 1})


class CrashPoint(unittest.TestCase):
    def test_the_run_seed_depends_on_the_campaign_seed_and_the_run(self):
        self.assertEqual(plans.crash_seed(1, 1), plans.crash_seed(1, 1))
        self.assertNotEqual(plans.crash_seed(1, 1), plans.crash_seed(1, 2))
        self.assertNotEqual(plans.crash_seed(1, 1), plans.crash_seed(2, 1))
        self.assertEqual(plans.crash_seed(7, 3), 0xFFFFFFFF & plans.crash_seed(7, 3))

    def test_the_point_is_in_the_fault_window_and_reproducible(self):
        points = {plans.crash_point(plans.crash_seed(1, n), 100, 150) for n in range(1, 200)}
        self.assertTrue(all(101 <= p <= 250 for p in points))
        self.assertGreater(len(points), 50)     # spread over the window
        self.assertEqual(plans.crash_point(42, 30, 40), plans.crash_point(42, 30, 40))
        self.assertEqual(plans.crash_point(42, 30, 1), 31)

    def test_crash_arguments(self):
        self.assertEqual(plans.crash_arguments("power-loss", "/d", 9), ["crash", "/d", "--kill", "--json"])
        self.assertEqual(plans.crash_arguments("power-loss-torn", "/d", 9),
                         ["crash", "/d", "--kill", "--json", "--torn", "--seed", "9"])
        self.assertEqual(plans.crashsim_option("posix"), "crashsim")
        self.assertEqual(plans.crashsim_option("journal"), "crashsim=journal")
        with self.assertRaises(ValueError):
            plans.crashsim_option("ext4")

    def test_logged_operations_counts_outcomes_not_pending_records_nor_a_cut_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "acks.jsonl")
            state = {}
            self.assertEqual(driver.logged_operations(path, state), 0)     # not there yet
            with open(path, "w") as f:
                f.write(json.dumps(rec("k1", 1, None, pending=True)) + "\n" + json.dumps(rec("k1", 1)) + "\n")
                f.write(json.dumps(rec("k2", 1, None, pending=True)) + "\n" + '{"key": "k2", "ver')
            self.assertEqual(driver.logged_operations(path, state), 1)
            with open(path, "a") as f:
                f.write('sion": 1, "ok": true}\n')
            self.assertEqual(driver.logged_operations(path, state), 2)


class InDoubt(unittest.TestCase):
    def history(self, *records):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "acks.jsonl")
            with open(path, "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            return workload.load_acks(path)

    def test_an_outcome_replaces_its_pending_record(self):
        h = self.history(rec("k1", 1, None, pending=True), rec("k1", 1),
                         rec("k1", 2, None, pending=True), rec("k1", 2, ok=False, error="E"))
        self.assertEqual([x["ok"] for x in h["k1"]], [True, False])

    def test_an_operation_the_crash_cut_short_stays_in_doubt(self):
        h = self.history(rec("k1", 1, None, pending=True), rec("k1", 1), rec("k1", 2, None, pending=True))
        self.assertEqual([x["ok"] for x in h["k1"]], [True, None])
        k1 = h["k1"]
        # In doubt: either the new value or the last acknowledged one is right.
        self.assertEqual(workload.classify_key("k1", k1, value("k1", 2)), "correct")
        self.assertEqual(workload.classify_key("k1", k1, value("k1", 1)), "correct")
        # But the key must not vanish: the first value was acknowledged.
        self.assertEqual(workload.classify_key("k1", k1, None), "key not found")

    def test_an_insert_in_doubt_may_be_absent_or_present(self):
        h = self.history(rec("k9", 1, None, pending=True))
        self.assertEqual(workload.classify_key("k9", h["k9"], None), "correct")
        self.assertEqual(workload.classify_key("k9", h["k9"], value("k9", 1)), "correct")
        # A failure once the crash was requested is in doubt too (ok None).
        h = self.history(rec("k8", 1, None, in_doubt="the crash", error="ConnectionError"))
        self.assertEqual(workload.classify_key("k8", h["k8"], value("k8", 1)), "correct")

    def test_counts_keep_in_doubt_apart_from_failed(self):
        hist = self.history(rec("k1", 1), rec("k2", 1, ok=False), rec("k3", 1, None, pending=True))
        v = workload.classify(hist, {"data": {"k1": value("k1", 1), "k3": value("k3", 1)}}, {"total": 1, "crash": 1})
        self.assertEqual((v["verdict"], v["acked_keys"], v["failed_ops"], v["in_doubt_ops"]), ("correct", 1, 1, 1))


class Outcomes(unittest.TestCase):
    LOST = {"verdict": "key not found", "categories": ["key not found", "old value"],
            "counts": {"key not found": 5, "old value": 2}, "acked_keys": 120}
    KEPT = {"verdict": "correct", "categories": ["correct"], "counts": {}, "acked_keys": 120}
    GONE = {"verdict": "application unavailable", "categories": ["application unavailable"],
            "counts": {"application unavailable": 120}, "acked_keys": 120}

    def test_power_loss(self):
        self.assertEqual(plans.power_loss_outcome(self.LOST, unsafe=True),
                         ("lost", "7 of 120 acknowledged keys lost or wrong", "self-test passed"))
        self.assertEqual(plans.power_loss_outcome(self.KEPT, unsafe=False),
                         ("survived", "every acknowledged key came back", "ok"))
        self.assertEqual(plans.power_loss_outcome(self.KEPT, unsafe=True)[2][:16], "SELF-TEST FAILED")
        self.assertEqual(plans.power_loss_outcome(self.LOST, unsafe=False)[2], "finding: a safe configuration lost data")
        self.assertEqual(plans.power_loss_outcome(self.KEPT, unsafe=True, block=True)[2][:5], "note:")
        self.assertEqual(plans.power_loss_outcome(self.LOST, unsafe=True, block=True)[2], "self-test passed")
        self.assertEqual(plans.power_loss_outcome(self.GONE, unsafe=True)[:2],
                         ("lost", "the application did not come back"))

    def test_corruption(self):
        self.assertEqual(plans.corruption_outcome(self.LOST, ["sqlite3.DatabaseError: database disk image is malformed"]),
                         "detected")
        self.assertEqual(plans.corruption_outcome(self.LOST, ["OperationalError: disk I/O error"]), "silent loss")
        self.assertEqual(plans.corruption_outcome(self.KEPT, []), "survived")
        self.assertEqual(plans.corruption_outcome(self.GONE, []), "unavailable")
        for said in ("Corruption: block checksum mismatch", "MDB_CORRUPTED: Located page was wrong type",
                     "MDB_PAGE_NOTFOUND", "invalid page in block 3 of relation base/5/16384",
                     "Bad file format reading the append only file", "file is not a database"):
            self.assertTrue(plans.mentions_corruption(said), said)
        self.assertFalse(plans.mentions_corruption("ConnectionError: Connection refused"))

    def test_the_reported_texts(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "workload.json")
            with open(path, "w") as f:
                json.dump({"errors": {"Corruption: bad block": 2}}, f)
            said = workload.reported_texts({"unavailable": None, "lookup_errors": {"k1": "IOError"},
                                            "integrity": ["row 3 missing"], "notes": []}, path)
            self.assertEqual(said, ["IOError", "row 3 missing", "Corruption: bad block"])


class SelfTestRule(unittest.TestCase):
    def row(self, verdict, outcome=None):
        r = {"verdict": verdict}
        if outcome:
            r["outcome"] = [outcome]
        return r

    def test_an_unsafe_configuration_must_lose_at_the_power_loss(self):
        self.assertTrue(report.is_failed_self_test("power-loss", "unsafe", self.row("correct", "survived")))
        self.assertTrue(report.is_failed_self_test("power-loss-torn", "unsafe", self.row("not exercised", "survived")))
        self.assertFalse(report.is_failed_self_test("power-loss", "unsafe", self.row("key not found", "lost")))
        # A safe configuration's loss is a finding, never a failed campaign; a campaign error is counted elsewhere.
        self.assertFalse(report.is_failed_self_test("power-loss", "safe", self.row("key not found", "lost")))
        self.assertFalse(report.is_failed_self_test("power-loss", "unsafe", self.row("campaign error")))
        self.assertTrue(report.is_failed_self_test("selftest-drop", "safe", self.row("correct")))
        self.assertFalse(report.is_failed_self_test("corrupt-write", "unsafe", self.row("correct", "survived")))
        # Block mode: ext4 commits unsynced data every 5 s on its own; surviving is a note there.
        self.assertFalse(report.is_failed_self_test("power-loss", "unsafe", self.row("correct", "survived"), "ext4"))
        self.assertTrue(report.is_failed_self_test("power-loss", "unsafe", self.row("not exercised", "survived"), "ext4"))

    def test_the_power_loss_table(self):
        rs = [{"app": "sqlite", "config": "unsafe", "mode": "rollback", "fs": "fuse", "plan": "power-loss",
               "acked_keys": 140, "in_doubt_ops": 1, "verdict": "key not found",
               "categories": ["key not found", "old value"], "counts": {"key not found": 130, "old value": 10},
               "outcome": ["lost", "140 of 140 acknowledged keys lost or wrong", "self-test passed"]},
              {"app": "sqlite", "config": "safe", "mode": "wal", "fs": "ext4", "plan": "power-loss", "verdict": "campaign error",
               "crash_model": "posix",
               "error": "faultfs crash failed | exit 1"},
              {"app": "sqlite", "config": "safe", "mode": "wal", "fs": "fuse", "plan": "wb-eio", "verdict": "correct"}]
        lines = report.power_loss_table(rs).splitlines()
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[2], "| sqlite | unsafe | rollback | fuse | `power-loss` | 140 | 140 | 1 | "
                                   "key not found + old value | lost; 140 of 140 acknowledged keys lost or wrong |")
        self.assertEqual(lines[3], "| sqlite | safe | wal | ext4 (posix) | `power-loss` | - | - | - | campaign error | "
                                   "faultfs crash failed \\| exit 1 |")


class PowerLossDoc(unittest.TestCase):
    def test_the_block_gathers_several_campaigns_and_names_their_crash_model(self):
        row = {"app": "lmdb", "config": "safe", "mode": "default", "fs": "fuse", "plan": "power-loss",
               "acked_keys": 130, "in_doubt_ops": 0, "verdict": "correct", "categories": ["correct"], "counts": {},
               "outcome": ["survived", "every acknowledged key came back", "ok"]}
        with tempfile.TemporaryDirectory() as tmp:
            outs = []
            for name, command in (("a", "campaign lmdb --plans power-loss"),
                                  ("b", "campaign lmdb --plans power-loss --crash-model journal")):
                out = os.path.join(tmp, name)
                os.mkdir(out)
                with open(os.path.join(out, "results.jsonl"), "w") as f:
                    f.write(json.dumps(row) + "\n" + json.dumps(dict(row, plan="wb-eio")) + "\n")
                with open(os.path.join(out, "meta.txt"), "w") as f:
                    f.write("command: %s\n" % command)
                outs.append(out)
            doc = os.path.join(tmp, "doc.md")
            with open(doc, "w") as f:
                f.write("# Doc\n\n" + report.PL_BEGIN + "\nold\n" + report.PL_END + "\n\nafter\n")
            report.power_loss_doc(doc, outs)
            with open(doc) as f:
                text = f.read()
        self.assertNotIn("old", text)
        self.assertTrue(text.startswith("# Doc\n") and text.endswith("after\n"))
        self.assertIn("| lmdb | safe | default | fuse (posix) | `power-loss` | 130 | 0 |", text)
        self.assertIn("| lmdb | safe | default | fuse (journal) | `power-loss` | 130 | 0 |", text)
        self.assertNotIn("wb-eio", text)


class UnsafeCommandLine(unittest.TestCase):
    def test_unsafe_configs_seed_and_crash_model(self):
        o = driver.parse_args(["sqlite", "--plans", "power-loss"])
        self.assertEqual((o.configs, o.seed, o.crash_model), (["safe"], 1, "posix"))
        o = driver.parse_args(["sqlite", "--unsafe", "--plans", "power-loss", "--seed", "7", "--crash-model", "journal"])
        self.assertEqual((o.configs, o.seed, o.crash_model), (["unsafe"], 7, "journal"))
        self.assertEqual(driver.parse_args(["redis", "--configs", "safe,unsafe"]).configs, ["safe", "unsafe"])
        for args in (["sqlite", "--configs", "risky"], ["sqlite", "--seed", "x"], ["sqlite", "--crash-model", "ext4"],
                     ["sqlite", "--configs", ""]):
            with self.assertRaises(driver.UsageError):
                driver.parse_args(args)
        o = driver.parse_args(["sqlite", "--sizes", "20,20,5"])
        self.assertEqual(o.sizes(), ["--preload", "20", "--ops", "20", "--after", "5", "--give-up", "8"])
        with self.assertRaises(driver.UsageError):
            driver.parse_args(["sqlite", "--sizes", "20,0,5"])
        for flag in ("--unsafe", "--configs", "--seed", "--crash-model", "--sizes"):
            self.assertIn(flag, driver.usage())
        self.assertIn("power-loss", driver.usage())

    def test_cases_per_configuration(self):
        o = driver.parse_args(["sqlite", "redis", "postgres", "--configs", "safe,unsafe", "--plans", "power-loss"])
        todo, notes = driver.cases(o)
        self.assertEqual(notes, [])
        self.assertEqual([(a, m, c) for a, m, c, _, _ in todo], [
            ("sqlite", "rollback", "safe"), ("sqlite", "wal", "safe"),
            ("sqlite", "rollback", "unsafe"), ("sqlite", "wal", "unsafe"),
            ("redis", "always", "safe"), ("redis", "everysec", "safe"), ("redis", "no", "unsafe"),
            ("postgres", "default", "safe"), ("postgres", "retry", "safe"), ("postgres", "default", "unsafe")])
        todo, notes = driver.cases(driver.parse_args(["redis", "--unsafe", "--modes", "always", "--plans", "power-loss"]))
        self.assertEqual((todo, notes), ([], ["redis has no mode always when unsafe (modes: no)"]))

    def test_an_unsafe_run_has_its_own_folder(self):
        self.assertEqual(driver.run_dir("/o", "sqlite", "wal", "power-loss", 2, "unsafe"), "/o/sqlite/wal-unsafe/power-loss/run2")
        self.assertEqual(driver.run_dir("/o", "sqlite", "wal", "power-loss", 2), "/o/sqlite/wal/power-loss/run2")

    def test_every_application_names_its_unsafe_setting(self):
        for name, app in APPS.items():
            with self.subTest(name):
                self.assertTrue(app.unsafe_setting)
                self.assertTrue(app.modes_for(True))
                self.assertEqual(app.modes_for(False), app.modes)
                self.assertTrue(app("/tmp/x", unsafe=True).unsafe)


if __name__ == "__main__":
    unittest.main()
