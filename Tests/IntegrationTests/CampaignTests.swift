// The application campaigns (mount-scripts/campaign): SQLite with the reduced
// plan, and short cases of each server campaign. The verdicts must come from
// real data: the control run is correct and fired nothing; every fault plan
// fired (or says "not exercised"); the seeded losses (a key deleted behind
// SQLite's back; data-file writebacks dropped by faultfs) are caught as lost
// data. Needs root, python3 (Debian's /usr/bin/python3) and sqlite3; the
// server cases need postgresql / redis-server (the campaign installs them).
// CampaignCheckerTests runs the campaigns' and the bench report's Python unit
// tests (no root, no mount).
import Foundation
import Glibc
import Testing
import TestSupport

/// One parsed "VERDICT app=... mode=... plan=... verdict=..." line.
struct CampaignVerdict {
    var fields: [String: String]
    var app: String { fields["app"] ?? "" }
    var mode: String { fields["mode"] ?? "" }
    var plan: String { fields["plan"] ?? "" }
    var verdict: String { fields["verdict"] ?? "" }
    /// safe, or unsafe (campaign --unsafe / --configs).
    var config: String { fields["config"] ?? "" }
    /// How often the plan acted (injections with an errno, writes dropped or stalled); -1 when not said.
    var fired: Int { Int(fields["fired"] ?? "") ?? -1 }
    /// What it did, e.g. "EIO:1" or "drop:40".
    var injected: String { fields["injected"] ?? "" }
    func count(_ key: String) -> Int { Int(fields[key] ?? "") ?? 0 }
}

/// Verdicts that mean "acknowledged data came back wrong or not at all".
private let lostData: Set<String> = ["key_not_found", "old_value", "key_corruption", "value_corruption",
                                     "database_corruption"]

/// What every run's verdict must satisfy, whatever the application did: a
/// verdict, and "fired" consistent with it (a fault that never acted is
/// "not exercised", never "correct"; the control run fires nothing).
private func expectConsistent(_ v: CampaignVerdict, _ context: String) {
    #expect(v.verdict != "campaign_error", "\(v.fields) \(context)")
    #expect(v.count("acked") > 0, "no acknowledged keys: \(v.fields)")
    #expect(v.fired >= 0, "the verdict does not say whether the fault fired: \(v.fields)")
    if v.plan == "baseline" {
        #expect(v.fired == 0 && v.verdict == "correct", "baseline: \(v.fields)")
    } else if v.fired == 0 {
        #expect(v.verdict != "correct", "a fault that never fired was reported correct: \(v.fields)")
        #expect(v.count("not_exercised") == 1, "\(v.fields)")
    } else {
        #expect(v.count("not_exercised") == 0, "\(v.fields)")
    }
}

/// A self-test's loss must be caught: its rule acted, and the verdict is lost data
/// (or, where the application refuses its damaged files, unavailable).
private func expectCaught(_ v: CampaignVerdict, allowUnavailable: Bool) {
    #expect(v.fired > 0, "the self-test never fired: \(v.fields)")
    let caught = lostData.contains(v.verdict) || (allowUnavailable && v.verdict == "application_unavailable")
    #expect(caught, "a silent loss went unnoticed: \(v.fields)")
}

private func parseVerdicts(_ text: String) -> [CampaignVerdict] {
    text.split(separator: "\n").filter { $0.hasPrefix("VERDICT ") }.map { line in
        var fields: [String: String] = [:]
        for part in line.dropFirst("VERDICT ".count).split(separator: " ") {
            if let eq = part.firstIndex(of: "=") {
                fields[String(part[..<eq])] = String(part[part.index(after: eq)...])
            }
        }
        return CampaignVerdict(fields: fields)
    }
}

private func repoRoot() -> String {
    // Tests/IntegrationTests/CampaignTests.swift -> the repository.
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}

private func runCampaign(_ arguments: [String], limitSeconds: Int) throws -> (CommandResult, [CampaignVerdict], String) {
    let out = try makeScratchDirectory("itest-campaign")
    let script = repoRoot() + "/mount-scripts/campaign"
    let result = try runCommand(script, arguments + ["--faultfs", try FaultFSBinary.path(), "--out", out, "--no-doc"],
                                limitSeconds: limitSeconds)
    return (result, parseVerdicts(result.stdout), out)
}

/// Mounts below `dir` still in the mount table, and servers the campaign may have left.
private func leftovers(_ dir: String) -> [String] {
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    return mounts.split(separator: "\n").filter { $0.contains(dir) }.map(String.init)
}

private func serverStillListening(port: Int) -> Bool {
    let tcp = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
    let hex = String(format: ":%04X", port)
    return tcp.split(separator: "\n").contains { line in
        let cols = line.split(separator: " ")
        return cols.count > 3 && cols[1].hasSuffix(hex) && cols[3] == "0A"  // LISTEN
    }
}

private func canRun() -> Bool { geteuid() == 0 && access("/usr/bin/python3", X_OK) == 0 }

extension AllMountTests {
    @Suite(.serialized)
    struct CampaignTests {
        @Test("sqlite --quick: control runs correct, seeded losses caught, every fault plan gets a verdict")
        func sqliteQuick() throws {
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            let (result, verdicts, out) = try runCampaign(["sqlite", "--quick"], limitSeconds: 600)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(!result.stdout.contains("SELF-TEST FAILED"), "\(result.stdout)")
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            for mode in ["rollback", "wal"] {
                let mine = verdicts.filter { $0.mode == mode }
                #expect(Set(mine.map(\.plan)) == ["baseline", "selftest-seeded", "selftest-drop", "wb-eio-data", "fsync-eio"],
                        "\(mode): \(result.stdout)")
                for v in mine { expectConsistent(v, result.stderr) }
                // The control run: every acknowledged key read back as written.
                if let base = mine.first(where: { $0.plan == "baseline" }) {
                    #expect(base.count("correct") >= base.count("acked"), "baseline: \(base.fields)")
                }
                // One key deleted and one set back behind SQLite's back: exactly those two are caught.
                if let seeded = mine.first(where: { $0.plan == "selftest-seeded" }) {
                    #expect(seeded.verdict == "key_not_found", "seeded: \(seeded.fields)")
                    #expect(seeded.count("key_not_found") == 1 && seeded.count("old_value") == 1, "seeded: \(seeded.fields)")
                    #expect(seeded.fired == 1 && seeded.injected == "tampered:1", "seeded: \(seeded.fields)")
                }
                // Writebacks of test.db acknowledged and dropped by faultfs: lost data, found.
                if let dropped = mine.first(where: { $0.plan == "selftest-drop" }) {
                    expectCaught(dropped, allowUnavailable: false)
                    #expect(dropped.injected.hasPrefix("drop:"), "\(dropped.fields)")
                }
                // The failed writeback / fsync fired exactly once, with EIO; a failed
                // fsync is reported to the committing transaction; SQLite loses nothing.
                for plan in ["wb-eio-data", "fsync-eio"] {
                    if let v = mine.first(where: { $0.plan == plan }) {
                        #expect(v.fired == 1 && v.injected == "EIO:1", "\(plan): \(v.fields)")
                        #expect(v.verdict == "correct", "\(plan): \(v.fields)")
                    }
                }
                if let fsync = mine.first(where: { $0.plan == "fsync-eio" }) {
                    #expect(fsync.count("failed_ops") >= 1, "fsync-eio: no commit failed: \(fsync.fields)")
                }
            }
            let table = try String(contentsOfFile: out + "/results.md", encoding: .utf8)
            // The table: how often the fault fired, then the verdicts with k/N.
            #expect(table.contains("| sqlite | rollback | `baseline` | 0/1: nothing | correct 1/1 ("), "\(table)")
            #expect(table.contains("| sqlite | rollback | `fsync-eio` | 1/1: EIO x1 | correct 1/1 ("), "\(table)")
        }

        @Test("postgres, short cases: a failed data-file writeback, and the dropped-writeback self-test")
        func postgresShort() throws {
            // The campaign installs PostgreSQL itself when it is missing.
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            let (result, verdicts, out) = try runCampaign(["postgres", "--quick", "--modes", "default",
                                                           "--plans", "wb-eio-data,selftest-drop"], limitSeconds: 600)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(verdicts.map(\.plan) == ["wb-eio-data", "selftest-drop"], "\(result.stdout)")
            for v in verdicts { expectConsistent(v, result.stderr) }
            if let v = verdicts.first(where: { $0.plan == "wb-eio-data" }) {
                // PANIC, then recovery from WAL: nothing acknowledged is lost.
                #expect(v.fired == 1 && v.injected == "EIO:1" && v.verdict == "correct", "\(v.fields)")
            }
            // Dropped data-file writebacks, still dropped at the final checkpoint: the
            // WAL that would have repaired them is recycled, so keys are lost.
            if let v = verdicts.first(where: { $0.plan == "selftest-drop" }) { expectCaught(v, allowUnavailable: false) }
            #expect(result.stdout.contains("PANIC"), "PostgreSQL (data_sync_retry=off) should PANIC on the failed fsync: \(result.stdout)")
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            #expect(!serverStillListening(port: 54329), "a PostgreSQL server is still listening on 54329")
        }

        @Test("redis, short cases: appendfsync always with a failed AOF fsync, and the self-test")
        func redisShort() throws {
            // The campaign installs redis-server itself when it is missing.
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            let (result, verdicts, out) = try runCampaign(["redis", "--quick", "--modes", "always",
                                                           "--plans", "fsync-eio,selftest-drop"], limitSeconds: 600)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(verdicts.map(\.plan) == ["fsync-eio", "selftest-drop"], "\(result.stdout)")
            for v in verdicts { expectConsistent(v, result.stderr) }
            if let v = verdicts.first(where: { $0.plan == "fsync-eio" }) {
                #expect(v.fired == 1 && v.injected == "EIO:1", "\(v.fields)")
                #expect(v.count("failed_ops") >= 1, "Redis should refuse or fail writes after a failed AOF fsync: \(v.fields)")
            }
            // Dropped AOF writebacks: lost keys, or an AOF Redis refuses to load.
            if let v = verdicts.first(where: { $0.plan == "selftest-drop" }) { expectCaught(v, allowUnavailable: true) }
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            #expect(!serverStillListening(port: 63790), "a Redis server is still listening on 63790")
        }

        @Test("a self-test whose rule fired but lost nothing fails the campaign")
        func selfTestThatMissesFails() throws {
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            // The self-test's `drop writeback` replaced by a 1 ms delay (--plan-line):
            // the rule fires (delays are the plan acting), nothing is lost, so the
            // verdict is "correct", which a self-test must never be.
            let out = try makeScratchDirectory("itest-campaign")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let result = try runCommand(repoRoot() + "/mount-scripts/campaign",
                                        ["sqlite", "--quick", "--modes", "rollback", "--plans", "selftest-drop",
                                         "--plan-line", "selftest-drop=delay writeback 1ms",
                                         "--faultfs", try FaultFSBinary.path(), "--out", out, "--no-doc"], limitSeconds: 300)
            let verdicts = parseVerdicts(result.stdout)
            #expect(verdicts.count == 1, "\(result)")
            if let v = verdicts.first {
                #expect(v.verdict == "correct" && v.fired > 0 && v.injected.hasPrefix("delay:"), "\(v.fields)")
            }
            #expect(result.status == 1, "\(result)")
            #expect(result.stdout.contains("SELF-TEST FAILED app=sqlite mode=rollback plan=selftest-drop"), "\(result)")
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
        }

        @Test("sqlite --fs ext4: a block plan (the data file's disk blocks fail once) gets a verdict; nothing leaks")
        func sqliteBlockExt4() throws {
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            let (result, verdicts, out) = try runCampaign(["sqlite", "--quick", "--fs", "ext4", "--modes", "rollback",
                                                           "--plans", "blk-data-eio,blk-journal-eio"], limitSeconds: 600)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(verdicts.map(\.plan) == ["blk-data-eio", "blk-journal-eio"], "\(result.stdout)")
            for v in verdicts {
                #expect(v.fields["fs"] == "ext4", "\(v.fields)")
                expectConsistent(v, result.stderr)
            }
            if let v = verdicts.first(where: { $0.plan == "blk-data-eio" }) {
                // The failed disk write of test.db is reported at fsync: the commit fails.
                #expect(v.fired == 1 && v.injected == "EIO:1", "\(v.fields)")
            }
            // Nothing left: no mount below OUT, no loop device over a campaign disk, no block state.
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            let name = URL(fileURLWithPath: out).lastPathComponent
            let loops = try runCommand("losetup", ["-a"], limitSeconds: 30).stdout
            #expect(!loops.contains(name), "loop devices left behind: \(loops)")
            let states = (try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/faultfs/block")) ?? []
            #expect(!states.contains { $0.contains(name) }, "block state left behind: \(states)")
        }

        @Test("sqlite WAL power-loss: the safe configuration keeps every acknowledged key, synchronous=OFF loses them")
        func sqlitePowerLoss() throws {
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            // A small workload (20 keys, a crash among the next 20 commits), one run per configuration.
            let (result, verdicts, out) = try runCampaign(["sqlite", "--modes", "wal", "--plans", "power-loss",
                                                           "--configs", "safe,unsafe", "--no-monitor",
                                                           "--sizes", "20,20,5"], limitSeconds: 300)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(verdicts.map(\.config) == ["safe", "unsafe"], "\(result.stdout)")
            for v in verdicts {
                expectConsistent(v, result.stderr)
                // The crash is the plan acting: one crash event from the mount.
                #expect(v.fired == 1 && v.injected == "crash:1", "\(v.fields)")
            }
            if let safe = verdicts.first(where: { $0.config == "safe" }) {
                #expect(safe.verdict == "correct" && safe.fields["outcome"] == "survived", "\(safe.fields)")
            }
            // Nothing was ever synced: the power loss takes acknowledged keys with it.
            if let unsafe = verdicts.first(where: { $0.config == "unsafe" }) {
                #expect(lostData.contains(unsafe.verdict) && unsafe.fields["outcome"] == "lost", "\(unsafe.fields)")
                #expect(unsafe.count("key_not_found") + unsafe.count("old_value") > 0, "\(unsafe.fields)")
            }
            #expect(!result.stdout.contains("SELF-TEST FAILED"), "\(result.stdout)")
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
        }

        @Test("a campaign that fails half-way names the step and leaves nothing behind")
        func failureIsCleanedUp() throws {
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            // A faultfs "binary" that mounts nothing: the fault phase cannot start.
            let fake = try makeScratchDirectory("itest-campaign")
            defer { try? FileManager.default.removeItem(atPath: fake) }
            let path = fake + "/faultfs"
            try "#!/bin/sh\n[ \"$1\" = run ] && [ \"$2\" = --help ] && exit 0\nexit 1\n".write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            let out = try makeScratchDirectory("itest-campaign")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let result = try runCommand(repoRoot() + "/mount-scripts/campaign",
                                        ["sqlite", "--quick", "--modes", "rollback", "--plans", "baseline",
                                         "--faultfs", path, "--out", out, "--no-doc"], limitSeconds: 120)
            #expect(result.status == 1, "\(result)")
            #expect(result.stderr.contains("FAILED at step 'fault phase"), "\(result)")
            #expect(result.stdout.contains("verdict=campaign_error"), "\(result)")
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
        }
    }
}

/// The campaigns' and the benchmark report's own unit tests (Python's
/// unittest: nothing to install): classify() per category and worst-of, the
/// fired counts, the self-test rule, checker errors, the driver's command line
/// and mount-table parser (mount-scripts/campaigns/tests); the benchmark's
/// ratios and markdown on recorded results (mount-scripts/bench.d/tests).
/// No root, no mount.
@Suite struct CampaignCheckerTests {
    private func expectUnitTestsPass(_ folder: String) throws {
        let python = "/usr/bin/python3"
        guard access(python, X_OK) == 0 else { Issue.record("needs \(python)"); return }
        let result = try runCommand(python, ["-m", "unittest", "discover", "-v", "-s", repoRoot() + "/" + folder],
                                    limitSeconds: 300)
        #expect(result.status == 0, "\(result.stderr)")
        // unittest reports on stderr: "Ran N tests ... OK"; an empty discovery is a failure too.
        let ran = result.stderr.split(separator: "\n").first { $0.hasPrefix("Ran ") }.map(String.init) ?? ""
        #expect(ran.hasPrefix("Ran ") && !ran.hasPrefix("Ran 0 "), "\(result.stderr)")
    }

    @Test("the campaign checker's and driver's Python unit tests pass")
    func pythonUnitTests() throws { try expectUnitTestsPass("mount-scripts/campaigns/tests") }

    @Test("the benchmark report's Python unit tests pass")
    func benchReportUnitTests() throws { try expectUnitTestsPass("mount-scripts/bench.d/tests") }
}
