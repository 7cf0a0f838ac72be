import Testing
@testable import MonitorCore

@Suite struct MemInfoTests {
    @Test func fixtureDirtyRoseByAbout8MiB() throws {
        let before = MemInfo.parse(try fixture("meminfo.before"))
        let dirty = MemInfo.parse(try fixture("meminfo.dirty"))
        #expect(before.dirty == kB(244))
        let rise = try #require(dirty.dirty) - before.dirty!
        #expect(rise > 7 * 1048576 && rise < 9 * 1048576)
        #expect(dirty.writeback == 0)            // present and zero is not absent
        #expect(dirty.writebackTmp == 0)
        #expect(dirty.memAvailable == kB(24226676))
        #expect(dirty.cached == kB(177768))
        // Unit-less lines are counts, not kB.
        #expect(dirty.counts["HugePages_Total"] == 0)
        #expect(dirty.bytes["HugePages_Total"] == nil)
    }

    @Test func missingCountersAreNil() {
        let m = MemInfo.parse("MemTotal: 1000 kB\nDirty:  8 kB\ngarbage line\nWeird: x kB\n")
        #expect(m.dirty == 8192)
        #expect(m.writeback == nil)
        #expect(m.writebackTmp == nil)
        #expect(m.memAvailable == nil)
        #expect(m["Weird"] == nil)
    }
}

@Suite struct VMStatTests {
    @Test func fixtureCountersMoved() throws {
        let a = VMStat.parse(try fixture("vmstat.before"))
        let b = VMStat.parse(try fixture("vmstat.after"))
        #expect(b.nrWritten! - a.nrWritten! == 13182325 - 13180277)
        #expect(b.nrDirtied! > a.nrDirtied!)
        #expect(a.nrVmscanImmediateReclaim == 28795)
        #expect(a.nrThrottledWritten == 0)
        #expect(a.oomKill == 0)
        #expect(a.nrDirtyThreshold == 1209668)
        #expect(a.nrDirtyBackgroundThreshold == 604095)
        #expect(a.pgscanTotal == 0)
        #expect(a.allocstallTotal == 0)
        #expect(a.family("pgscan_").count == 7)
    }

    @Test func sumsCountOnlyReclaimersAndAreNilWhenAbsent() {
        let v = VMStat.parse("""
        pgscan_kswapd 10
        pgscan_direct 5
        pgscan_anon 12
        pgscan_file 3
        pgscan_direct_throttle 2
        allocstall_normal 4
        allocstall_movable 1
        """)
        #expect(v.pgscanTotal == 15)          // not 32: anon/file split the same pages
        #expect(v.allocstallTotal == 5)
        #expect(v.pgstealTotal == nil)        // absent, not 0
        #expect(v.nrThrottledWritten == nil)
        #expect(v.oomKill == nil)
    }
}

@Suite struct SmallFileTests {
    @Test func pressure() {
        let p = Pressure.parse("""
        some avg10=1.50 avg60=0.20 avg300=0.00 total=123456
        full avg10=0.00 avg60=0.00 avg300=0.00 total=42
        """)
        #expect(p.some?.avg10 == 1.5)
        #expect(p.some?.totalUs == 123456)
        #expect(p.full?.totalUs == 42)
        #expect(Pressure.parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").full == nil)
    }

    @Test func bdiStats() {
        let s = BdiStats.parse("""
        BdiWriteback:            37888 kB
        BdiReclaimable:          11648 kB
        BdiDirtyThresh:          49152 kB
        DirtyThresh:           4838672 kB
        BackgroundThresh:      2416380 kB
        BdiDirtied:             409600 kB
        BdiWritten:                  0 kB
        BdiWriteBandwidth:           0 kBps
        b_dirty:                     1
        b_io:                        0
        b_more_io:                   0
        b_dirty_time:                0
        bdi_list:                    1
        state:                       1f
        """)
        #expect(s.bdiWriteback == kB(37888))
        #expect(s.bdiReclaimable == kB(11648))
        #expect(s.inFlight == kB(37888 + 11648))
        #expect(s.bdiDirtyThresh == kB(49152))
        #expect(s.dirtyThresh == kB(4838672))
        #expect(s.backgroundThresh == kB(2416380))
        #expect(s.writeBandwidth == 0)
        #expect(s.bDirty == 1)
        #expect(s.state == 0x1f)
        #expect(BdiStats.parse("BdiWriteback: 0 kB\n").bdiDirtyThresh == nil)
        #expect(BdiStats.parse("BdiWriteback: 0 kB\n").inFlight == nil)
    }

    @Test func singleValueFiles() {
        let b = BdiSettings.parse(maxRatio: "1\n", minRatio: "0\n", maxBytes: nil, strictLimit: "1\n")
        #expect(b == BdiSettings(maxRatio: 1, minRatio: 0, maxBytes: nil, strictLimit: 1))
        let f = FuseConnectionState.parse(waiting: "12\n", maxBackground: "12\n", congestionThreshold: nil)
        #expect(f.waiting == 12 && f.maxBackground == 12 && f.congestionThreshold == nil)
        #expect(parseSingleInt("") == nil)
        #expect(parseSingleInt("abc\n") == nil)
        #expect(parseSingleInt("0\n") == 0)
    }

    @Test func cgroupV1AndV2() {
        let v1 = CgroupMemoryStat.parse("cache 4096\nrss 8192\ndirty 1024\nwriteback 2048\nmapped_file 0\n")
        #expect(v1.version == .v1)
        #expect(v1.dirty == 1024 && v1.writeback == 2048 && v1.file == 4096 && v1.anon == 8192)
        let v2 = CgroupMemoryStat.parse("anon 100\nfile 200\nfile_dirty 30\nfile_writeback 40\nshmem 0\n")
        #expect(v2.version == .v2)
        #expect(v2.dirty == 30 && v2.writeback == 40 && v2.file == 200 && v2.anon == 100)
        let partial = CgroupMemoryStat.parse("anon 100\nfile 200\n")
        #expect(partial.version == .v2 && partial.dirty == nil && partial.writeback == nil)
        #expect(CgroupMemoryStat.parse("").version == .unknown)
    }

    @Test func procStatWithNastyComm() throws {
        // comm "a) (b c" — contains ") (" and spaces.
        let line = "4242 (a) (b c) D 1 4242 4242 0 -1 4194560 100 0 0 0 17 23 0 0 20 0 1 0 12345 10000000 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        let s = try #require(ProcStat.parse(line))
        #expect(s.pid == 4242)
        #expect(s.comm == "a) (b c")
        #expect(s.state == "D")
        #expect(s.utimeTicks == 17)
        #expect(s.stimeTicks == 23)
        #expect(s.rssPages == 321)
        #expect(ProcStat.parse("12 (x) R 1 2") == nil)
    }

    @Test func wchan() {
        #expect(parseWchan("balance_dirty_pages") == "balance_dirty_pages")
        #expect(parseWchan("0") == nil)
        #expect(parseWchan("") == nil)
    }

    @Test func deviceID() {
        #expect(DeviceID("0:39") == DeviceID(major: 0, minor: 39))
        #expect(DeviceID("0:39:") == DeviceID(major: 0, minor: 39))
        #expect(DeviceID("39") == nil)
        #expect(DeviceID(major: 8, minor: 1).description == "8:1")
    }
}

/// kB → bytes, typed as Int64 so comparisons with Int64? are exact.
func kB(_ n: Int64) -> Int64 { n * 1024 }
