/// Text cells of the toolkit's CSV files.
package enum CSVText {
    /// `s` as one CSV field: quoted when it holds a comma, quote or newline; a text that a spreadsheet would run
    /// as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return, and not a number) gets a
    /// leading `'` first (OWASP's CSV-injection rule), so a layer or model name from a file stays text.
    package static func field(_ s: String) -> String {
        var s = s
        if let first = s.first, "=+-@\t\r".contains(first), Double(s) == nil { s = "'" + s }
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
