/// A strict JSON value (RFC 8259) as parsed from safetensors headers; objects keep their order and refuse
/// duplicate keys.
indirect enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Recursive-descent JSON parser over raw bytes with a depth bound; errors carry the byte offset.
struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    var i = 0
    let maxDepth: Int
    /// Makes the error for (offset, expected, found).
    let fail: (Int, String, String) -> CheckpointError

    init(bytes: UnsafeRawBufferPointer, maxDepth: Int = 32, fail: @escaping (Int, String, String) -> CheckpointError) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.fail = fail
    }

    /// Parses one value followed only by whitespace.
    mutating func parseDocument() throws -> JSONValue {
        skipWhitespace()
        let v = try parseValue(depth: 0)
        skipWhitespace()
        guard i == bytes.count else { throw fail(i, "end of JSON", describe(i)) }
        return v
    }

    private func describe(_ at: Int) -> String {
        guard at < bytes.count else { return "end of data" }
        let b = bytes[at]
        return (b >= 0x20 && b < 0x7f) ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
    }

    private mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0a || bytes[i] == 0x0d || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func expectLiteral(_ s: StaticString, _ v: JSONValue) throws -> JSONValue {
        let n = s.utf8CodeUnitCount
        guard bytes.count - i >= n else { throw fail(i, "\(s)", "end of data") }
        for k in 0..<n where bytes[i + k] != s.utf8Start[k] { throw fail(i + k, "\(s)", describe(i + k)) }
        i += n
        return v
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard depth < maxDepth else { throw fail(i, "JSON nested at most \(maxDepth) deep", "deeper nesting") }
        guard i < bytes.count else { throw fail(i, "a JSON value", "end of data") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var members: [(String, JSONValue)] = []
            var seen = Set<String>()
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWhitespace()
                let keyOffset = i
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
                    throw fail(i, "a string key", describe(i))
                }
                let key = try parseString()
                guard seen.insert(key).inserted else {
                    throw fail(keyOffset, "unique keys", "duplicate key \"\(key)\"")
                }
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail(i, "':'", describe(i)) }
                i += 1
                skipWhitespace()
                members.append((key, try parseValue(depth: depth + 1)))
                skipWhitespace()
                guard i < bytes.count else { throw fail(i, "',' or '}'", "end of data") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw fail(i, "',' or '}'", describe(i))
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard i < bytes.count else { throw fail(i, "',' or ']'", "end of data") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail(i, "',' or ']'", describe(i))
            }
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"): return try expectLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try expectLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try expectLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw fail(i, "a JSON value", describe(i))
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int {
            let s = i
            while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
            return i - s
        }
        let intStart = i
        let nInt = digits()
        guard nInt > 0 else { throw fail(i, "a digit", describe(i)) }
        guard !(nInt > 1 && bytes[intStart] == UInt8(ascii: "0")) else {
            throw fail(intStart, "no leading zeros", "'0'")
        }
        var isInteger = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1; isInteger = false
            guard digits() > 0 else { throw fail(i, "a digit after '.'", describe(i)) }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1; isInteger = false
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw fail(i, "a digit in the exponent", describe(i)) }
        }
        guard i - start <= 400 else { throw fail(start, "a number of at most 400 characters", "\(i - start)") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        if isInteger {
            guard let v = Int(text) else { throw fail(start, "an integer that fits in 64 bits", text) }
            return .int(v)
        }
        guard let d = Double(text) else { throw fail(start, "a number", text) }
        return .double(d)
    }

    private mutating func hex4() throws -> UInt32 {
        guard bytes.count - i >= 4 else { throw fail(i, "4 hex digits", "end of data") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail(i, "a hex digit", describe(i))
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// Parses a string starting at the opening quote; validates UTF-8 and escapes.
    private mutating func parseString() throws -> String {
        let open = i
        i += 1
        var out = [UInt8]()
        var runStart = i
        while true {
            guard i < bytes.count else { throw fail(open, "a closing '\"'", "end of data") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
                i += 1
                break
            }
            if c < 0x20 { throw fail(i, "no control characters in strings", describe(i)) }
            if c == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
                i += 1
                guard i < bytes.count else { throw fail(i, "an escape character", "end of data") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5c)
                case UInt8(ascii: "/"): out.append(0x2f)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard bytes.count - i >= 6, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u")
                        else {
                            throw fail(i, "a low surrogate escape", describe(i))
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else {
                            throw fail(i - 4, "a low surrogate", "\\u\(String(low, radix: 16))")
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail(i - 4, "a high surrogate first", "lone low surrogate")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail(i - 4, "a Unicode scalar", "\(scalar)") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    throw fail(i - 1, "a valid escape", describe(i - 1))
                }
                runStart = i
                continue
            }
            i += 1
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw fail(open, "valid UTF-8 in a string", "invalid bytes")
        }
        return s
    }
}

/// Minimal JSON writing helpers (strings escaped per RFC 8259).
enum JSONWriter {
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
