"""Unit tests of the campaign driver's pure parts: the command line, the list
of runs, the mount table parser, and the application modules' pure helpers
(the seeded loss, the server log summaries). Standard library only:

    python3 -m unittest discover -s mount-scripts/campaigns/tests -v
"""
import json, os, sys, tempfile, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import driver    # noqa: E402
import mounts    # noqa: E402
from apps import APPS, postgres, redis, sqlite  # noqa: E402


class CommandLine(unittest.TestCase):
    def test_defaults(self):
        o = driver.parse_args(["sqlite"])
        self.assertEqual((o.apps, o.plans, o.modes, o.runs, o.doc), (["sqlite"], driver.STANDARD_PLANS, [], 1, False))
        self.assertEqual((o.out, o.monitor, o.keep), ("/tmp/faultfs-campaign", True, False))

    def test_quick_fault_plans_modes(self):
        o = driver.parse_args(["--quick", "redis", "--modes", "always", "--runs", "3"])
        self.assertEqual((o.plans, o.modes, o.runs), (driver.QUICK_PLANS, ["always"], 3))
        self.assertIn("--give-up", o.sizes())
        self.assertEqual(driver.parse_args(["sqlite", "--fault", "fail fsync EIO"]).plans, ["custom:fail fsync EIO"])
        self.assertEqual(driver.parse_args(["sqlite", "--plans", "baseline,stall"]).plans, ["baseline", "stall"])

    def test_the_doc_is_written_only_for_a_full_campaign_of_every_application(self):
        self.assertTrue(driver.parse_args(["all"]).doc)
        for args in (["all", "--quick"], ["all", "--plans", "baseline"], ["all", "--modes", "wal"], ["sqlite"],
                     ["all", "--no-doc"]):
            with self.subTest(args=args):
                self.assertFalse(driver.parse_args(args).doc)
        self.assertTrue(driver.parse_args(["sqlite", "--doc"]).doc)

    def test_bad_usage(self):
        for args in ([], ["nosuchapp"], ["sqlite", "--runs", "0"], ["sqlite", "--plans", "nosuch"],
                     ["sqlite", "--out"], ["sqlite", "--plan-line", "nosuch=x"]):
            with self.subTest(args=args):
                with self.assertRaises(driver.UsageError):
                    driver.parse_args(args)
        self.assertTrue(driver.parse_args(["--help"]).help)

    def test_plan_line(self):
        o = driver.parse_args(["sqlite", "--plan-line", "selftest-drop=delay writeback 1ms"])
        self.assertEqual(o.plan_lines, {"selftest-drop": "delay writeback 1ms"})

    def test_usage_lists_every_option(self):
        text = driver.usage()
        for flag in ("--fault", "--plans", "--modes", "--runs", "--quick", "--out", "--faultfs", "--no-monitor",
                     "--doc", "--keep", "--plan-line", "--help"):
            self.assertIn(flag, text)


class Cases(unittest.TestCase):
    def test_order_and_the_seeded_self_test_only_where_an_application_has_one(self):
        o = driver.parse_args(["sqlite", "lmdb", "--quick", "--plans", "baseline,selftest-seeded", "--runs", "2"])
        todo, notes = driver.cases(o)
        self.assertEqual(notes, [])
        self.assertEqual(todo, [("sqlite", "rollback", "safe", "baseline", 1), ("sqlite", "rollback", "safe", "baseline", 2),
                                ("sqlite", "rollback", "safe", "selftest-seeded", 1),
                                ("sqlite", "rollback", "safe", "selftest-seeded", 2),
                                ("sqlite", "wal", "safe", "baseline", 1), ("sqlite", "wal", "safe", "baseline", 2),
                                ("sqlite", "wal", "safe", "selftest-seeded", 1), ("sqlite", "wal", "safe", "selftest-seeded", 2),
                                ("lmdb", "default", "safe", "baseline", 1), ("lmdb", "default", "safe", "baseline", 2)])

    def test_a_mode_an_application_lacks_is_a_note(self):
        todo, notes = driver.cases(driver.parse_args(["sqlite", "redis", "--modes", "wal", "--plans", "baseline"]))
        self.assertEqual(todo, [("sqlite", "wal", "safe", "baseline", 1)])
        self.assertEqual(notes, ["redis has no mode wal (modes: always everysec)"])

    def test_run_folders(self):
        self.assertEqual(driver.run_dir("/o", "sqlite", "wal", "custom:fail fsync EIO count=1", 2),
                         "/o/sqlite/wal/custom_fail_fsync_EIO_count=1/run2")

    def test_every_application_module_says_what_it_is(self):
        self.assertEqual(sorted(APPS), sorted(driver.ALL_APPS))
        for name, app in APPS.items():
            with self.subTest(name):
                self.assertEqual(app.name, name)
                self.assertTrue(app.modes and app.data_glob and app.packages)
                self.assertEqual(app.server, app.port != 0)


class MountTable(unittest.TestCase):
    TEXT = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
            "95 22 0:50 / /tmp/out/sqlite/wal/baseline/run1/data rw,nosuid,nodev shared:60 - fuse.faultfs "
            "/tmp/out/sqlite/wal/baseline/run1/data rw,user_id=0\n"
            "96 22 0:51 / /tmp/out\\040x/a\\134b\\011c rw - fuse.faultfs src rw\n"
            "97 22 0:52 / /tmp/outside rw - fuse.faultfs src rw\n")

    def test_fields_and_octal_escapes(self):
        self.assertEqual(mounts.parse_mountinfo(self.TEXT), [
            ("/", "ext4"), ("/tmp/out/sqlite/wal/baseline/run1/data", "fuse.faultfs"),
            ("/tmp/out x/a\\b\tc", "fuse.faultfs"), ("/tmp/outside", "fuse.faultfs")])
        self.assertEqual(mounts.unescape_mountinfo("a\\040b\\012"), "a b\n")

    def test_optional_fields_of_any_number(self):
        line = "1 2 0:3 / /m rw shared:1 master:2 propagate_from:3 - fuse.faultfs s rw\n"
        self.assertEqual(mounts.parse_mountinfo(line), [("/m", "fuse.faultfs")])


class MountFiles(unittest.TestCase):
    """mounts.py over a directory laid out like a mount's .faultfs (no mount needed)."""

    def mount(self, tmp, status=None):
        os.mkdir(os.path.join(tmp, ".faultfs"))
        if status is not None:
            with open(os.path.join(tmp, ".faultfs", "status"), "w") as f:
                f.write(json.dumps(status) + "\n")
        return tmp

    def status(self, capacity):
        return {"version": "dev", "pid": 4321, "mountpoint": "/m", "source": "/m", "options": [],
                "writeback_cache": True, "armed_rules": 0, "capacity": capacity}

    def test_pid_and_used_bytes_come_from_status(self):
        with tempfile.TemporaryDirectory() as tmp:
            m = self.mount(tmp, self.status({"state": "ready", "limit": 1 << 40, "used": 123456}))
            self.assertEqual((mounts.daemon_pid(m), mounts.capacity_used(m)), (4321, 123456))
        with tempfile.TemporaryDirectory() as tmp:
            m = self.mount(tmp, self.status({"state": "off"}))
            self.assertIsNone(mounts.capacity_used(m))
        with tempfile.TemporaryDirectory() as tmp:
            m = self.mount(tmp, self.status({"state": "measuring", "limit": 1 << 40}))
            self.assertIsNone(mounts.capacity_used(m, timeout=0.2))   # never ready: gives up

    def test_control_lines_go_in_one_write_and_a_refusal_raises(self):
        with tempfile.TemporaryDirectory() as tmp:
            m = self.mount(tmp)
            path = os.path.join(m, ".faultfs", "control")
            open(path, "w").close()
            mounts.control(m, "clear", "capacity off", "release")
            with open(path) as f:
                self.assertEqual(f.read(), "clear\ncapacity off\nrelease\n")
            os.unlink(path)
            os.mkdir(path)   # open(O_WRONLY) fails: EISDIR stands for the daemon's refusal
            with self.assertRaises(mounts.ControlRefused):
                mounts.control(m, "fail nothing")


class Applications(unittest.TestCase):
    def acks(self, *records):
        return [json.dumps({"key": k, "value": v, "ok": ok}) for k, v, ok in records]

    def test_the_seeded_loss_deletes_one_key_and_sets_another_back(self):
        lines = self.acks(("k2", "a1", True), ("k1", "b1", True), ("k3", "c1", True), ("k3", "c2", True),
                          ("k2", "a2", True), ("k1", "b2", False))
        self.assertEqual(sqlite.tamper_targets(lines), ("k1", "k2", "a1"))
        # No other key with two acknowledged values: the second key is deleted.
        self.assertEqual(sqlite.tamper_targets(self.acks(("k1", "a", True), ("k2", "b", True), ("k2", "c", False))),
                         ("k1", "k2", None))

    def test_postgres_log_summary(self):
        log = ("2026-01-01 LOG:  database system is ready\n"
               "2026-01-01 [9] PANIC:  could not fsync file \"base/5/16384\": Input/output error\n"
               "2026-01-01 [1] LOG:  checkpointer process (PID 9) was terminated by signal 6: Aborted\n"
               "2026-01-01 [1] LOG:  redo done at 0/1A2B3C system usage: CPU\n"
               "2026-01-01 [3] WARNING: terminating connection\n"
               "2026-01-01 [1] LOG:  all server processes terminated; reinitializing\n")
        self.assertEqual(postgres.summarize_log(log).split(";"), [
            'PANIC x1 (could not fsync file "base/5/16384": Input/output error)',
            "WARNING x1 (terminating connection)",
            "a server process was killed (checkpointer process (PID 9) was terminated by signal 6: Aborted)",
            "postmaster restarted the server (crash recovery)",
            "recovery replayed WAL (redo done at 0/1A2B3C system usage: CPU)"])
        self.assertEqual(postgres.summarize_log("LOG: fine\n"), "")

    def test_redis_log_summary(self):
        log = ("1:M 01 Jan 00:00:00.000 # Redis version=7.0.15\n"
               "1:M 01 Jan 00:00:01.000 # Error writing to the AOF file: Input/output error\n"
               "1:M 01 Jan 00:00:02.000 # Error writing to the AOF file: Input/output error\n"
               "1:M 01 Jan 00:00:03.000 # Background AOF rewrite failed\n"
               "1:M 01 Jan 00:00:04.000 * Ready to accept connections\n")
        self.assertEqual(redis.summarize_log(log), "Error writing to the AOF file: Input/output error (x2);"
                                                   "Background AOF rewrite failed (x1)")


if __name__ == "__main__":
    unittest.main()
