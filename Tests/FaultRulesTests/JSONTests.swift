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
