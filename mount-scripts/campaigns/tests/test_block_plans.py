"""Unit tests of block mode's pure parts (campaign --fs): each plan's
`faultfs ctl` line per file system, which plans apply where (and why not),
the mount arguments, blk-full's firings from the acknowledgement log, and the
command line. No root, no mount:

    python3 -m unittest discover -s mount-scripts/campaigns/tests -v
"""
import json, os, sys, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import driver    # noqa: E402
import plans     # noqa: E402

BLOCK_FS = ("ext4", "ext4-journal", "xfs", "btrfs")


class CtlLines(unittest.TestCase):
    def test_each_block_plan_is_one_ctl_line_with_the_data_files_glob(self):
        self.assertEqual(plans.lines("blk-data-eio", "sqlite/test.db"),
                         ["fail write EIO count=1 file=sqlite/test.db"])
        self.assertEqual(plans.lines("blk-journal-eio", "x"), ["fail write EIO count=1 region=journal"])
        self.assertEqual(plans.lines("blk-flush-eio", "x"), ["fail flush EIO count=1"])
        self.assertEqual(plans.lines("blk-stall", "x"), ["stall write"])
        # The full disk is a filler file, not a rule.
        self.assertEqual(plans.lines("blk-full", "x"), [])
        self.assertEqual(plans.lines("custom:fail read EIO sectors=0-7", "x"), ["fail read EIO sectors=0-7"])

    def test_every_block_plan_has_a_description(self):
        for plan in plans.BLOCK_PLANS:
            self.assertTrue(plans.describe(plan))
            self.assertTrue(plans.fault_expected(plan))

    def test_mount_arguments_per_file_system(self):
        self.assertEqual(plans.block_mount_arguments("ext4"), ["--fs", "ext4"])
        self.assertEqual(plans.block_mount_arguments("ext4-journal"), ["--fs", "ext4", "-o", "data=journal"])
        self.assertEqual(plans.block_mount_arguments("xfs"), ["--fs", "xfs"])
        self.assertEqual(plans.block_mount_arguments("btrfs"), ["--fs", "btrfs"])
        with self.assertRaises(ValueError):
            plans.block_mount_arguments("fuse")


class Applicability(unittest.TestCase):
    def test_block_plans_apply_to_ext4_and_xfs(self):
        for fs in ("ext4", "ext4-journal", "xfs"):
            for plan in plans.BLOCK_PLANS:
                with self.subTest(fs=fs, plan=plan):
                    self.assertIsNone(plans.not_applicable(plan, fs))

    def test_btrfs_has_no_journal_and_no_file_mapping(self):
        self.assertIn("no journal", plans.not_applicable("blk-journal-eio", "btrfs"))
        self.assertIn("file=", plans.not_applicable("blk-data-eio", "btrfs"))
        for plan in ("blk-flush-eio", "blk-full", "blk-stall"):
            self.assertIsNone(plans.not_applicable(plan, "btrfs"))

    def test_fuse_plans_and_block_plans_do_not_mix(self):
        for fs in BLOCK_FS:
            for plan in ("wb-eio", "fsync-eio", "capacity", "selftest-drop"):
                with self.subTest(fs=fs, plan=plan):
                    self.assertIn("FUSE-mode plan", plans.not_applicable(plan, fs))
        for plan in plans.BLOCK_PLANS:
            self.assertIn("needs a disk", plans.not_applicable(plan, "fuse"))
        for fs in ("fuse",) + BLOCK_FS:
            for plan in ("baseline", "selftest-seeded", "custom:stall write"):
                self.assertIsNone(plans.not_applicable(plan, fs))


class FullDisk(unittest.TestCase):
    def test_failed_fault_window_operations_that_say_full_are_its_firings(self):
        acks = [json.dumps(a) for a in (
            {"key": "k1", "ok": False, "phase": "fault", "error": "OperationalError: database or disk is full"},
            {"key": "k2", "ok": False, "phase": "fault", "error": "OSError: [Errno 28] No space left on device"},
            {"key": "k3", "ok": False, "phase": "fault", "error": "OperationalError: disk I/O error"},
            {"key": "k4", "ok": False, "phase": "after", "error": "database or disk is full"},
            {"key": "k5", "ok": True, "phase": "fault"})] + ["not json"]
        events = plans.full_events(acks)
        self.assertEqual([json.loads(e)["key"] for e in events], ["k1", "k2"])
        self.assertEqual(plans.fired(events), {"total": 2, "ENOSPC": 2})


class CommandLine(unittest.TestCase):
    def test_fs_and_its_default_plans(self):
        self.assertEqual(driver.parse_args(["sqlite"]).fs, "fuse")
        o = driver.parse_args(["sqlite", "--fs", "xfs"])
        self.assertEqual((o.fs, o.block, o.plans), ("xfs", True, driver.BLOCK_STANDARD_PLANS))
        o = driver.parse_args(["sqlite", "--fs", "ext4-journal", "--quick"])
        self.assertEqual(o.plans, driver.BLOCK_QUICK_PLANS)
        o = driver.parse_args(["sqlite", "--fs", "btrfs", "--plans", "blk-flush-eio,blk-journal-eio"])
        self.assertEqual(o.plans, ["blk-flush-eio", "blk-journal-eio"])
        self.assertEqual(driver.parse_args(["sqlite", "--fs", "ext4", "--plan-line", "blk-stall=delay write 1ms"])
                         .plan_lines, {"blk-stall": "delay write 1ms"})

    def test_bad_fs_and_no_doc_table_in_block_mode(self):
        for args in (["sqlite", "--fs", "zfs"], ["sqlite", "--fs"], ["all", "--fs", "ext4", "--doc"]):
            with self.subTest(args=args):
                with self.assertRaises(driver.UsageError):
                    driver.parse_args(args)
        self.assertFalse(driver.parse_args(["all", "--fs", "ext4"]).doc)
        self.assertIn("--fs", driver.usage())


if __name__ == "__main__":
    unittest.main()
