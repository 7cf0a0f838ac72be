// The application campaigns (mount-scripts/campaign): SQLite with the reduced
// plan, and one short case of each server campaign. The verdicts must come
// from real data: the control run is correct, and the seeded losses (a key
// deleted behind SQLite's back; data-file writebacks dropped by faultfs) are
// caught. Needs root, python3 (Debian's /usr/bin/python3) and sqlite3; the
// server cases need postgresql / redis-server (the campaign installs them).
import Foundation
import Glibc
import Testing

/// One parsed "VERDICT app=... mode=... plan=... verdict=..." line.
struct CampaignVerdict {
    var fields: [String: String]
    var app: String { fields["app"] ?? "" }
    var mode: String { fields["mode"] ?? "" }
    var plan: String { fields["plan"] ?? "" }
    var verdict: String { fields["verdict"] ?? "" }
    func count(_ key: String) -> Int { Int(fields[key] ?? "") ?? 0 }
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
    let out = try makeCampaignDir()
    let script = repoRoot() + "/mount-scripts/campaign"
    let result = try runCommand(script, arguments + ["--faultfs", try FaultFSBinary.path(), "--out", out, "--no-doc"],
                                limitSeconds: limitSeconds)
    return (result, parseVerdicts(result.stdout), out)
}

private func makeCampaignDir() throws -> String {
    var template = Array("/tmp/faultfs-itest-campaign.XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw SetupError("mkdtemp failed: errno \(errno)")
    }
    return String(cString: made)
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
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            for mode in ["rollback", "wal"] {
                let mine = verdicts.filter { $0.mode == mode }
                #expect(Set(mine.map(\.plan)) == ["baseline", "selftest-seeded", "selftest-drop", "wb-eio-data", "fsync-eio"],
                        "\(mode): \(result.stdout)")
                for v in mine {
                    #expect(v.verdict != "campaign_error", "\(mode)/\(v.plan): \(result.stdout) \(result.stderr)")
                    #expect(v.count("acked") > 0, "\(mode)/\(v.plan): no acknowledged keys: \(v.fields)")
                }
                // The control run: every acknowledged key read back as written.
                if let base = mine.first(where: { $0.plan == "baseline" }) {
                    #expect(base.verdict == "correct", "baseline: \(base.fields)")
                    #expect(base.count("correct") >= base.count("acked"), "baseline: \(base.fields)")
                }
                // One key deleted and one set back behind SQLite's back: exactly those two are caught.
                if let seeded = mine.first(where: { $0.plan == "selftest-seeded" }) {
                    #expect(seeded.verdict == "key_not_found", "seeded: \(seeded.fields)")
                    #expect(seeded.count("key_not_found") + seeded.count("old_value") == 2, "seeded: \(seeded.fields)")
                }
                // Writebacks of test.db acknowledged and dropped by faultfs: never "correct".
                if let dropped = mine.first(where: { $0.plan == "selftest-drop" }) {
                    #expect(dropped.verdict != "correct", "a silent loss went unnoticed: \(dropped.fields)")
                }
                // A failed fsync is reported to the committing transaction.
                if let fsync = mine.first(where: { $0.plan == "fsync-eio" }) {
                    #expect(fsync.count("failed_ops") >= 1, "fsync-eio: no commit failed: \(fsync.fields)")
                }
            }
            let table = try String(contentsOfFile: out + "/results.md", encoding: .utf8)
            #expect(table.contains("| sqlite | rollback | `baseline` | correct"), "\(table)")
        }

        @Test("postgres, one short case: a failed data-file writeback, verdict from the restarted server")
        func postgresShort() throws {
            // The campaign installs PostgreSQL itself when it is missing.
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            let (result, verdicts, out) = try runCampaign(["postgres", "--quick", "--modes", "default", "--plans", "wb-eio-data"],
                                                          limitSeconds: 600)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(verdicts.count == 1, "\(result.stdout)")
            if let v = verdicts.first {
                #expect(v.verdict != "campaign_error" && v.count("acked") > 0, "\(v.fields)")
            }
            #expect(result.stdout.contains("PANIC"), "PostgreSQL (data_sync_retry=off) should PANIC on the failed fsync: \(result.stdout)")
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            #expect(!serverStillListening(port: 54329), "a PostgreSQL server is still listening on 54329")
        }

        @Test("redis, one short case: appendfsync always with a failed AOF fsync")
        func redisShort() throws {
            // The campaign installs redis-server itself when it is missing.
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            let (result, verdicts, out) = try runCampaign(["redis", "--quick", "--modes", "always", "--plans", "fsync-eio"],
                                                          limitSeconds: 600)
            defer { try? FileManager.default.removeItem(atPath: out) }
            #expect(result.status == 0, "\(result)")
            #expect(verdicts.count == 1, "\(result.stdout)")
            if let v = verdicts.first {
                #expect(v.verdict != "campaign_error" && v.count("acked") > 0, "\(v.fields)")
                #expect(v.count("failed_ops") >= 1, "Redis should refuse or fail writes after a failed AOF fsync: \(v.fields)")
            }
            #expect(leftovers(out).isEmpty, "mounts left behind: \(leftovers(out))")
            #expect(!serverStillListening(port: 63790), "a Redis server is still listening on 63790")
        }

        @Test("a campaign that fails half-way names the step and leaves nothing behind")
        func failureIsCleanedUp() throws {
            guard canRun() else { Issue.record("needs root and /usr/bin/python3"); return }
            // A faultfs "binary" that mounts nothing: the fault phase cannot start.
            let fake = try makeCampaignDir()
            defer { try? FileManager.default.removeItem(atPath: fake) }
            let path = fake + "/faultfs"
            try "#!/bin/sh\n[ \"$1\" = run ] && [ \"$2\" = --help ] && exit 0\nexit 1\n".write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            let out = try makeCampaignDir()
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
