import Foundation

/// Shell-style globs over layer names, where `.` and `:` separate parts like `/` in a path: `*` and `?`
/// never cross them. So `blocks.*` is every block output, `blocks.*.mlp.fc1` every fc1, `blocks.*:cls` every
/// pooled CLS feature, and `blocks.1?` blocks 10–19.
public enum LayerGlob {
    /// True if `name` matches `pattern`.
    public static func matches(_ pattern: String, _ name: String) -> Bool {
        func path(_ s: String) -> String { String(s.map { $0 == "." || $0 == ":" ? "/" : $0 }) }
        return fnmatch(path(pattern), path(name), FNM_PATHNAME) == 0
    }

    /// True if `name` matches any of `patterns`.
    public static func matches(any patterns: [String], _ name: String) -> Bool {
        patterns.contains { matches($0, name) }
    }
}

/// Orders names with embedded numbers compared as numbers (`blocks.2` before `blocks.10`).
public func naturalOrder(_ a: String, _ b: String) -> Bool {
    func chunks(_ s: String) -> [(String, Int?)] {
        var out: [(String, Int?)] = []
        var cur = "", digits = false
        for ch in s {
            let d = ch.isASCII && ch.isNumber
            if !cur.isEmpty && d != digits { out.append((cur, digits ? Int(cur) : nil)); cur = "" }
            digits = d
            cur.append(ch)
        }
        if !cur.isEmpty { out.append((cur, digits ? Int(cur) : nil)) }
        return out
    }
    let ca = chunks(a), cb = chunks(b)
    for (x, y) in zip(ca, cb) {
        if let i = x.1, let j = y.1 { if i != j { return i < j } } else if x.0 != y.0 { return x.0 < y.0 }
    }
    return ca.count < cb.count
}
