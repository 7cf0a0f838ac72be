@testable import FaultRules
import Testing

@Suite struct JSONReaderTests {
    @Test func readsEveryKindOfValue() throws {
        let v = try parseJSON(#" {"s":"a\"b\\c\/d\n\u00e9\ud83d\ude00","i":-42,"f":1.5e3,"t":true,"n":null,"a":[1,"x",[]],"o":{"k":false}} "#)
        #expect(v["s"]?.string == "a\"b\\c/d\né😀")
        #expect(v["i"]?.int64 == -42)
        #expect(v["f"]?.double == 1500 && v["f"]?.int64 == nil)
        #expect(v["t"]?.bool == true)
        #expect(v["n"]?.isNull == true)
        #expect(v["a"] == .array([.number("1"), .string("x"), .array([])]))
        #expect(v["o"]?["k"]?.bool == false)
        #expect(v["missing"] == nil)
    }

    @Test func keepsMemberOrder() throws {
        guard case .object(let members) = try parseJSON(#"{"b":1,"a":2,"c":3}"#) else { Issue.record("not an object"); return }
        #expect(members.map(\.key) == ["b", "a", "c"])
    }

    @Test func integersAreExact() throws {
        #expect(try parseJSON("9223372036854775807").int64 == Int64.max)
        #expect(try parseJSON("-9223372036854775808").int64 == Int64.min)
        #expect(try parseJSON("9223372036854775808").int64 == nil)
        #expect(try parseJSON("-0").int64 == 0)
        #expect(try parseJSON("1795969217163457091").int64 == 1_795_969_217_163_457_091)
    }

    @Test func writerAndReaderAgree() throws {
        for text in ["", "plain", "q\"uote", "back\\slash", "\u{0}\u{1f}\u{7f}", "tab\tcr\rnl\n\u{8}\u{c}", "ünï 😀 中"] {
            #expect(try parseJSON(jsonString(text)).string == text)
        }
        #expect(jsonString("\u{1}") == #""\u0001""#)
    }

    @Test(arguments: [
        "", " ", "{", "}", "{\"a\":1,}", "[1,]", "[1 2]", "{\"a\" 1}", "{a:1}", "{'a':1}", "{\"a\":1}x", "{\"a\":1}{}",
        "01", "-", "1.", ".5", "1e", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "True",
        "\"unterminated", "\"bad \\x escape\"", "\"tab\tinside\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"",
        "\"\\ud800\\u0041\"", "{\"a\":1,\"a\":2}", "// comment\n{}", "[[[[[[[[[[]]]]]]]]]]",
    ])
    func refuses(_ text: String) {
        #expect(throws: JSONError.self) { try parseJSON(text) }
    }

    @Test func errorSaysWhere() {
        #expect(throws: JSONError(offset: 7, reason: "expected a key")) { try parseJSON("{\"a\":1,}") }
    }
}

@Suite struct JSONRecordTests {
    @Test func typedReadsNameTheKey() throws {
        let r = try JSONRecord(parsing: #"{"s":"x","n":null,"i":300,"b":true,"a":["p","q"],"o":{"k":1}}"#)
        #expect(try r.string("s") == "x")
        #expect(try r.optionalString("n") == nil)
        #expect(try r.integer("i", in: 0...UInt16.max) == 300)
        #expect(try r.bool("b"))
        #expect(try r.strings("a") == ["p", "q"])
        #expect(try r.record("o").integer("k", in: 0...1) == 1)
        #expect(throws: JSONRecordError.missingKey("z")) { try r.string("z") }
        #expect(throws: JSONRecordError.badValue("i")) { try r.integer("i", in: 0...UInt8.max) }
        #expect(throws: JSONRecordError.badValue("i")) { try r.string("i") }
        #expect(throws: JSONRecordError.badValue("s")) { try r.record("s") }
        #expect(throws: JSONRecordError.missingKey("o.z")) { try r.record("o").bool("z") }
        #expect(throws: JSONRecordError.unknownKey("o.k")) { try r.record("o").refuseOtherKeys(than: []) }
        #expect(throws: JSONRecordError.unknownKey("a")) { try r.refuseOtherKeys(than: ["s", "n", "i", "b", "o"]) }
        try r.refuseOtherKeys(than: ["s", "n", "i", "b", "o"], allowing: { key, _ in key == "a" })
    }

    @Test func refusesNonObjects() {
        #expect(throws: JSONRecordError.notAnObject) { try JSONRecord(parsing: "[]") }
        #expect(throws: JSONRecordError.notJSON(JSONError(offset: 0, reason: "unexpected character"))) { try JSONRecord(parsing: "x") }
    }
}
