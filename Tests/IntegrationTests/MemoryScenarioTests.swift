// The memory scenario for real: `faultfs run` with the mount's bdi limit
// lifted (--bdi-max-ratio, --bdi-strict-limit) and the writer in a small
// memory cgroup, writeback stalled or failing. What the run folder holds:
// the cgroup's series, the bdi change and its restoration, and the one line
// naming what happened to the writer. No timed assertions.
import FaultRules
import Foundation
import Glibc
import Testing

/// Writes MIB MiB (argv[1]) to big.bin, fsyncs, says how that went, and
/// exits with argv[2].
private let cgroupWriter = """
    import os, sys, time
    mib, code = int(sys.argv[1]), int(sys.argv[2])
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/big.bin", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    print("writer: start", flush=True)
    chunk = b"m" * (1 << 20)
    for i in range(mib):
        os.write(fd, chunk)
    print("writer: wrote %d MiB" % mib, flush=True)
    try:
        os.fsync(fd)
        print("writer: fsync ok", flush=True)
    except OSError as e:
        print("writer: fsync errno %d" % e.errno, flush=True)
    os.close(fd)
    print("writer: done", flush=True)
    time.sleep(0.5)  # a few more samples (every 100 ms) show the cgroup after the fsync
    sys.exit(code)
    """

private func jsonLines(_ path: String) throws -> [JSONValue] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { try? parseJSON(String($0)) }
}

private func series(_ samples: [JSONValue], _ key: String) -> [Double] { samples.compactMap { $0[key]?.double } }

private func notes(_ events: [JSONValue]) -> [String] {
    events.filter { $0["kind"]?.string == "note" }.compactMap { $0["text"]?.string }
}

extension AllMountTests {
@Suite(.serialized, .timeLimit(.minutes(5)))
struct MemoryScenarioRunTests {
    static let mib = 1048576.0

    @Test func stalledWritebackWithTheBdiLimitLiftedFillsTheCgroupAndThrottlesTheWriterInReclaim() throws {
        try withTemporaryDirectory("memory-stall") { tmp in
            let out = tmp + "/run"
            let r = try runCommand(try FaultFSBinary.path(), [
                "run", "--quiet", "--out", out, "--memory-limit", "96M",
                "--bdi-max-ratio", "100", "--bdi-strict-limit", "off",
                "--fault", "stall writeback path=big.bin", "--when", "^writer: start",
                "--fault", "clear", "--at", "8s", "--fault", "release", "--at", "8s",
                "--", "python3", "-c", cgroupWriter, "160", "0",
            ], limitSeconds: 240)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("writer: fsync ok"), "\(r)")

            let samples = try jsonLines(out + "/samples.jsonl")
            let events = try jsonLines(out + "/events.jsonl")
            // The cgroup's series: its limit, and dirty + writeback pages filling much of it.
            #expect(series(samples, "cg.max_bytes").allSatisfy { $0 == 96 * Self.mib })
            let current = series(samples, "cg.current_bytes")
            #expect(current.count >= 20)
            #expect((current.max() ?? 0) >= 64 * Self.mib, "peak \(current.max() ?? 0)")
            let pinned = samples.compactMap { s -> Double? in
                guard let d = s["cg.dirty_bytes"]?.double, let w = s["cg.writeback_bytes"]?.double else { return nil }
                return d + w
            }
            #expect((pinned.max() ?? 0) >= 48 * Self.mib, "peak dirty + writeback \(pinned.max() ?? 0)")
            // The lifted limit was in effect, and seen by the sampler.
            #expect(series(samples, "bdi.max_ratio").contains(100))
            #expect(series(samples, "bdi.strict_limit").contains(0))
            let said = notes(events)
            #expect(said.contains { $0.hasPrefix("bdi ") && $0.contains("max_ratio 1 → 100") }, "\(said)")
            #expect(said.contains { $0.hasPrefix("bdi limits restored: max_ratio=1 strict_limit=1") }, "\(said)")
            #expect(events.contains { $0["key"]?.string == "cgroup.tasks" })

            let summary = try String(contentsOfFile: out + "/summary.txt", encoding: .utf8)
            #expect(summary.contains("; changed: max_ratio 1→100 at "), "\(summary)")
            #expect(summary.contains("strict_limit 1→0"), "\(summary)")
            // On 6.18 the writer is throttled in reclaim (pages under writeback
            // cannot be freed), and the cgroup does not OOM.
            #expect(summary.contains("\nwriter: throttled in reclaim for "), "\(summary)")
            #expect(summary.contains("not OOM-killed"), "\(summary)")
            #expect(summary.contains("cgroup memory: peak "), "\(summary)")
            let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
            #expect(html.contains("The workload&#39;s memory cgroup") || html.contains("The workload's memory cgroup"))
            #expect(html.contains("Reclaim throttling (vmscan:mm_vmscan_throttled)"))
        }
    }

    @Test func failingWritebackFreesTheCgroupsPagesAndAFailingCommandStillGetsItsLimitsBack() throws {
        try withTemporaryDirectory("memory-fail") { tmp in
            let out = tmp + "/run"
            let r = try runCommand(try FaultFSBinary.path(), [
                "run", "--quiet", "--out", out, "--memory-limit", "96M",
                "--bdi-max-ratio", "100", "--bdi-strict-limit", "off", "--bdi-max-bytes", "2G",
                "--fault", "fail writeback EIO path=big.bin", "--when", "^writer: start",
                "--", "python3", "-c", cgroupWriter, "160", "3",
            ], limitSeconds: 240)
            #expect(r.status == 3, "the command's own status: \(r)")
            #expect(r.stdout.contains("writer: fsync errno 5"), "\(r)")
            let samples = try jsonLines(out + "/samples.jsonl")
            let events = try jsonLines(out + "/events.jsonl")
            let said = notes(events)
            // The kernel keeps max_bytes as a ratio of the dirty limit: it reads back rounded.
            let maxBytes = said.first { $0.hasPrefix("bdi ") && $0.contains(" max_bytes ") }?.split(separator: "→").last
                .flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            #expect(maxBytes.map { abs($0 - 2147483648) < 0.01 * 2147483648 } == true, "\(said)")
            #expect(said.contains { $0.hasPrefix("bdi limits restored: max_ratio=1 strict_limit=1") }, "\(said)")
            // Error replies end writeback at once: the pages are clean and
            // reclaimable, so the writer wrote more than its cgroup holds and
            // nothing stayed dirty or under writeback at the end.
            let cg = samples.filter { $0["cg.current_bytes"] != nil }
            let last = try #require(cg.last)
            let endPinned = (last["cg.dirty_bytes"]?.double ?? .infinity) + (last["cg.writeback_bytes"]?.double ?? .infinity)
            #expect(endPinned < 16 * Self.mib, "dirty + writeback at the end: \(endPinned)")
            let summary = try String(contentsOfFile: out + "/summary.txt", encoding: .utf8)
            #expect(summary.contains("\nwriter: "), "\(summary)")
            #expect(!summary.contains("OOM-killed\n"), "\(summary)")
            #expect(summary.contains("cgroup memory at the end: "), "\(summary)")
        }
    }

    @Test func badBdiOptionsAreRefusedBeforeAnythingRuns() throws {
        for (args, message) in [(["--bdi-max-ratio", "101"], "--bdi-max-ratio 101"),
                                (["--bdi-strict-limit", "maybe"], "--bdi-strict-limit maybe"),
                                (["--bdi-max-bytes", "lots"], "--bdi-max-bytes lots"),
                                (["--fs", "ext4", "--bdi-max-ratio", "5"], "need a FUSE mount")] {
            let r = try runCommand(try FaultFSBinary.path(), ["run", "--quiet", "--out", "/nonexistent/never"] + args + ["--", "true"],
                                   limitSeconds: 60)
            #expect(r.status != 0, "\(args): \(r)")
            #expect(r.stderr.contains(message), "\(args): \(r)")
        }
    }
}
}
