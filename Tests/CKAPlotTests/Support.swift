@testable import CKAPlot
import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import Testing

/// A fresh empty directory under the system temporary directory, removed by `cleanUp()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.path + "/ckaplot-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Names of the entries in the directory, hidden ones included.
    func contents() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }

    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}

/// Width and height from the IHDR chunk of a PNG file, after checking its signature.
func pngSize(_ path: String) throws -> (width: Int, height: Int) {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    #expect(bytes.count > 33)
    #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "PNG signature")
    #expect(Array(bytes[12..<16]) == Array("IHDR".utf8), "IHDR is the first chunk")
    func be32(_ k: Int) -> Int { bytes[k..<k + 4].reduce(0) { $0 << 8 | Int($1) } }
    return (be32(16), be32(20))
}

/// The text of an SVG file after checking that it parses as XML with an `<svg>` root.
func svgText(_ path: String) throws -> String {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let parser = XMLParser(data: data)
    let delegate = RootRecorder()
    parser.delegate = delegate
    #expect(parser.parse(), "SVG parses as XML: \(String(describing: parser.parserError))")
    #expect(delegate.root == "svg")
    return String(decoding: data, as: UTF8.self)
}

private final class RootRecorder: NSObject, XMLParserDelegate {
    var root: String?
    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
        qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]
    ) {
        if root == nil { root = elementName }
    }
}

/// Whether the SVG has a `<text>` element whose content is exactly `text` (XML-escaped).
func svgHasText(_ svg: String, _ text: String) -> Bool {
    svg.contains(">" + xmlEscaped(text) + "</text>")
}

/// A block-structured CKA-like matrix between two networks of `n` and `m` layers.
func blockCKA(rows n: Int, columns m: Int) -> [[Double]] {
    (0..<n).map { i in
        (0..<m).map { j in
            let a = Double(i) / Double(max(n - 1, 1)), b = Double(j) / Double(max(m - 1, 1))
            let diagonal = exp(-pow((a - b) / 0.18, 2))
            let block = (a > 0.6 && b > 0.6) ? 0.55 : 0
            return min(1, 0.15 + 0.8 * max(diagonal, block) + 0.05 * sin(Double(i * 7 + j * 3)))
        }
    }
}
