@testable import CKAPlot
import Foundation
import Testing

@Suite("Picture files")
struct PictureFileTests {
    let heatmap = Heatmap(
        values: blockCKA(rows: 6, columns: 5), rowLabels: (0..<6).map { "rowlayer.\($0)" },
        columnLabels: (0..<5).map { "collayer.\($0)" }, title: "Heatmap <title> & more",
        xLabel: "model B", yLabel: "model A")

    @Test("Heatmap: PNG signature and IHDR size, automatic and requested")
    func heatmapPNG() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        try heatmap.write(to: dir.file("auto.png"))
        let auto = try pngSize(dir.file("auto.png"))
        #expect(auto.width > 400 && auto.width < 3000 && auto.height > 400 && auto.height < 3000, "\(auto)")
        try heatmap.write(to: dir.file("fixed.PNG"), width: 901, height: 777)
        let fixed = try pngSize(dir.file("fixed.PNG"))
        #expect(fixed.width == 901 && fixed.height == 777)
        try heatmap.write(to: dir.file("wide.png"), width: 1200)
        #expect(try pngSize(dir.file("wide.png")).width == 1200)
        try heatmap.write(to: dir.file("tall.png"), height: 1300)
        #expect(try pngSize(dir.file("tall.png")).height == 1300)
        #expect(try dir.contents() == ["auto.png", "fixed.PNG", "tall.png", "wide.png"])
    }

    @Test("Heatmap: SVG is XML with the title, tick labels and colour-bar ticks")
    func heatmapSVG() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        try heatmap.write(to: dir.file("h.svg"))
        let svg = try svgText(dir.file("h.svg"))
        #expect(svg.contains("<title>Heatmap &lt;title&gt; &amp; more</title>"))
        #expect(svgHasText(svg, "Heatmap <title> & more"))
        for label in heatmap.rowLabels + heatmap.columnLabels + ["model A", "model B", "CKA"] {
            #expect(svgHasText(svg, label), "\(label)")
        }
        for tick in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] { #expect(svgHasText(svg, tick), "\(tick)") }
        // 6 × 5 ≤ 12 × 12: values are printed in the cells.
        #expect(svgHasText(svg, formatValue(heatmap.values[0][0])))
        try heatmap.write(to: dir.file("sized.svg"), width: 500, height: 400)
        let sized = try svgText(dir.file("sized.svg"))
        #expect(sized.contains("width=\"500pt\"") && sized.contains("height=\"400pt\""))
    }

    @Test("Heatmap: at most 25 tick labels per axis for 48 layers, and no annotation")
    func heatmapThinning() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let n = 48
        let h = Heatmap(
            values: blockCKA(rows: n, columns: n), rowLabels: (0..<n).map { "blocks.\($0).mlp.fc1" },
            columnLabels: (0..<n).map { "blocks.\($0).attn.qkv" }, title: "48 layers")
        try h.write(to: dir.file("h.svg"))
        let svg = try svgText(dir.file("h.svg"))
        let rows = h.rowLabels.filter { svgHasText(svg, $0) }.count
        let columns = h.columnLabels.filter { svgHasText(svg, $0) }.count
        #expect(rows >= 12 && rows <= 25, "\(rows) row labels")
        #expect(columns >= 12 && columns <= 25, "\(columns) column labels")
        #expect(svgHasText(svg, h.rowLabels[0]) && svgHasText(svg, h.columnLabels[0]))
        #expect(!svgHasText(svg, formatValue(h.values[0][0])), "no values printed in 48 × 48 cells")
        #expect(thinnedIndices(count: 200, slot: 100, minSpacing: 1).count <= 25)
        #expect(thinnedIndices(count: 10, slot: 2, minSpacing: 9) == [0, 5])
    }

    @Test("Heatmap grid: one file with every panel title, the overall title and a shared colour bar")
    func grid() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let panels = (0..<5).map { k in
            Heatmap(values: blockCKA(rows: 8 + k, columns: 12), title: "pair \(k)", xLabel: "B\(k)", yLabel: "A\(k)")
        }
        let grid = HeatmapGrid(panels: panels, title: "All pairs")
        try grid.write(to: dir.file("g.png"))
        let size = try pngSize(dir.file("g.png"))
        #expect(size.width > size.height / 2 && size.width > 800)
        try grid.write(to: dir.file("g3.png"), width: 1600, height: 900)
        #expect(try pngSize(dir.file("g3.png")) == (1600, 900))
        try grid.write(to: dir.file("g.svg"))
        let svg = try svgText(dir.file("g.svg"))
        #expect(svg.contains("<title>All pairs</title>"))
        for k in 0..<5 { #expect(svgHasText(svg, "pair \(k)") && svgHasText(svg, "B\(k)") && svgHasText(svg, "A\(k)")) }
        #expect(svg.components(separatedBy: ">CKA</text>").count == 2, "exactly one colour bar label")
        var oneRow = grid
        oneRow.columns = 5
        try oneRow.write(to: dir.file("row.png"))
        let row = try pngSize(dir.file("row.png"))
        #expect(row.width > 2 * row.height)
    }

    @Test("Line plot: PNG and SVG with title, legend names and 1-2-5 ticks")
    func linePlot() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let plot = LinePlot(
            series: [
                .init(name: "ViT-S/16", y: (0..<12).map { 0.1 + 0.06 * Double($0) }),
                .init(name: "DeiT-S", x: (0..<12).map(Double.init), y: (0..<12).map { 0.15 + 0.05 * Double($0) }),
            ], title: "k-NN accuracy", xLabel: "block", yLabel: "accuracy")
        try plot.write(to: dir.file("p.png"), width: 1000, height: 700)
        #expect(try pngSize(dir.file("p.png")) == (1000, 700))
        try plot.write(to: dir.file("p.svg"))
        let svg = try svgText(dir.file("p.svg"))
        for text in [
            "k-NN accuracy", "block", "accuracy", "ViT-S/16", "DeiT-S", "0", "2", "4", "10", "0.2", "0.4", "0.6",
        ] {
            #expect(svgHasText(svg, text), "\(text)")
        }
        // Fixed y range with negative values: typographic minus.
        var fixed = plot
        fixed.yRange = -1...1
        try fixed.write(to: dir.file("f.svg"))
        #expect(svgHasText(try svgText(dir.file("f.svg")), "\u{2212}0.5"))
    }

    @Test("Contour plot: PNG and SVG with title, labels and ticks")
    func contourPlot() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let xs = (0...20).map { -1 + 0.1 * Double($0) }, ys = (0...10).map { -0.5 + 0.1 * Double($0) }
        let z = ys.map { y in xs.map { x in x * x + 2 * y * y } }
        let plot = ContourPlot(
            x: xs, y: ys, z: z, title: "Landscape", xLabel: "alpha", yLabel: "beta",
            colorbarLabel: "loss", levelCount: 6)
        try plot.write(to: dir.file("c.png"))
        let auto = try pngSize(dir.file("c.png"))
        #expect(auto.width > auto.height, "wide plot for a wide domain: \(auto)")
        try plot.write(to: dir.file("c2.png"), width: 640, height: 480)
        #expect(try pngSize(dir.file("c2.png")) == (640, 480))
        try plot.write(to: dir.file("c.svg"))
        let svg = try svgText(dir.file("c.svg"))
        for text in ["Landscape", "alpha", "beta", "loss", "\u{2212}1.0", "0.0", "1.0", "\u{2212}0.5", "0.5"] {
            #expect(svgHasText(svg, text), "\(text)")
        }
        #expect(plot.contourLevels(in: 0...1.4).count == 6)
    }
}

@Suite("Failures leave no file")
struct FailureTests {
    let heatmap = Heatmap(values: [[1, 0.5], [0.5, 1]])

    @Test("Unsupported extensions throw and create nothing", arguments: ["h.jpg", "h", "h.png.tmp", "h.pdf"])
    func unsupportedExtension(name: String) throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        #expect(throws: PlotError.self) { try heatmap.write(to: dir.file(name)) }
        do {
            try LinePlot(series: [.init(name: "a", y: [1, 2])]).write(to: dir.file(name))
        } catch let error as PlotError {
            guard case .unsupportedExtension(let path, _) = error else { Issue.record("\(error)"); return }
            #expect(path == dir.file(name))
            #expect(error.description.contains(".png or .svg"))
        }
        #expect(try dir.contents().isEmpty)
    }

    @Test("A missing directory throws an I/O error and leaves no file")
    func missingDirectory() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("missing/sub/h.png")
        do {
            try heatmap.write(to: path)
            Issue.record("expected an error")
        } catch let error as PlotError {
            guard case .io(let p, _, _) = error else { Issue.record("\(error)"); return }
            #expect(p == path)
        }
        #expect(try dir.contents().isEmpty)
    }

    @Test("Renaming onto a directory fails, and the temporary file is removed")
    func renameFailure() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        try FileManager.default.createDirectory(atPath: dir.file("taken.svg"), withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: dir.file("taken.svg/inner"), withIntermediateDirectories: false)
        #expect(throws: PlotError.self) { try heatmap.write(to: dir.file("taken.svg")) }
        #expect(try dir.contents() == ["taken.svg"])
    }

    @Test("Success leaves only the final file and replaces an old one")
    func replace() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir.file("h.png")))
        try heatmap.write(to: dir.file("h.png"))
        #expect(try dir.contents() == ["h.png"])
        _ = try pngSize(dir.file("h.png"))
        try heatmap.write(to: dir.path + "//./h.svg")
        #expect(try dir.contents() == ["h.png", "h.svg"])
    }

    @Test("writeAtomically names its temporary file .<name>.partial-<pid>")
    func temporaryName() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        // Make the temporary file's name a directory: creating it fails, and the error names it.
        let temporary = dir.file(".x.png.partial-\(getpid())")
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        do {
            try writeAtomically([1, 2, 3], to: dir.file("x.png"))
            Issue.record("expected an error")
        } catch let error as PlotError {
            #expect(error.description.contains(".x.png.partial-\(getpid())"), "\(error)")
        }
        #expect(try dir.contents() == [".x.png.partial-\(getpid())"])
    }

    @Test("Invalid data throws typed errors before any file is made")
    func invalidData() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let p = dir.file("x.png")
        func expectError(
            _ body: () throws -> Void, _ check: (PlotError) -> Bool,
            sourceLocation: SourceLocation = #_sourceLocation
        ) {
            do {
                try body()
                Issue.record("expected an error", sourceLocation: sourceLocation)
            } catch let error as PlotError {
                #expect(check(error), "\(error)", sourceLocation: sourceLocation)
                #expect(!error.description.isEmpty, sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        func isEmpty(_ e: PlotError) -> Bool { if case .emptyData = e { return true } else { return false } }
        func isMismatch(_ e: PlotError) -> Bool { if case .sizeMismatch = e { return true } else { return false } }
        func isInvalid(_ e: PlotError) -> Bool { if case .invalidParameter = e { return true } else { return false } }

        expectError({ try Heatmap(values: []).write(to: p) }, isEmpty)
        expectError({ try Heatmap(values: [[]]).write(to: p) }, isEmpty)
        expectError({ try Heatmap(values: [[1, 2], [3]]).write(to: p) }, isMismatch)
        expectError({ try Heatmap(values: [[1, 2]], rowLabels: ["a", "b"]).write(to: p) }, isMismatch)
        expectError({ try Heatmap(values: [[1, 2]], columnLabels: ["a"]).write(to: p) }, isMismatch)
        expectError({ try Heatmap(values: [[1]], colorRange: 1...1).write(to: p) }, isInvalid)
        expectError({ try Heatmap(values: [[1]], colorRange: 0...Double.infinity).write(to: p) }, isInvalid)
        expectError({ try Heatmap(values: [[1]]).write(to: p, width: 0) }, isInvalid)
        expectError({ try Heatmap(values: blockCKA(rows: 40, columns: 40)).write(to: p, width: 60) }, isInvalid)
        expectError({ try HeatmapGrid(panels: []).write(to: p) }, isEmpty)
        expectError(
            { try HeatmapGrid(panels: [Heatmap(values: [[1]]), Heatmap(values: [[1, 2], [1]])]).write(to: p) },
            { isMismatch($0) && $0.description.contains("panel 1") })
        expectError({ try HeatmapGrid(panels: [Heatmap(values: [[1]])], columns: 0).write(to: p) }, isInvalid)
        expectError({ try LinePlot(series: []).write(to: p) }, isEmpty)
        expectError({ try LinePlot(series: [.init(name: "a", x: [1, 2, 3], y: [1, 2])]).write(to: p) }, isMismatch)
        expectError({ try LinePlot(series: [.init(name: "a", y: [.nan, .infinity])]).write(to: p) }, isEmpty)
        expectError({ try LinePlot(series: [.init(name: "a", y: [1, 2])], yRange: 2...2).write(to: p) }, isInvalid)
        let grid = [0.0, 1, 2]
        let field = [[0.0, 1, 2], [1, 2, 3], [2, 3, 4]]
        expectError({ try ContourPlot(x: [0, 1], y: grid, z: field).write(to: p) }, isMismatch)
        expectError({ try ContourPlot(x: grid, y: grid, z: [[0, 1], [1, 2], [2, 3]]).write(to: p) }, isMismatch)
        expectError({ try ContourPlot(x: [0, 2, 1], y: grid, z: field).write(to: p) }, isInvalid)
        expectError({ try ContourPlot(x: [0], y: [0], z: [[0]]).write(to: p) }, isEmpty)
        expectError({ try ContourPlot(x: grid, y: grid, z: field.map { $0.map { _ in .nan } }).write(to: p) }, isEmpty)
        expectError({ try ContourPlot(x: grid, y: grid, z: field, levelCount: -1).write(to: p) }, isInvalid)
        #expect(try dir.contents().isEmpty)
    }
}

@Suite("Missing values")
struct MissingValueTests {
    @Test("NaN and infinite cells draw (NaN grey) in PNG and SVG")
    func heatmapNaN() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        var values = blockCKA(rows: 5, columns: 5)
        values[1][2] = .nan
        values[3][3] = .infinity
        values[4][0] = -.infinity
        values[0][4] = 1.7
        try Heatmap(values: values).write(to: dir.file("n.png"))
        try Heatmap(values: values).write(to: dir.file("n.svg"))
        #expect(svgHasText(try svgText(dir.file("n.svg")), "NaN"), "the colour bar explains the grey")
        let allNaN = [[Double]](repeating: [.nan, .nan], count: 2)
        try Heatmap(values: allNaN).write(to: dir.file("all.png"))
        try HeatmapGrid(panels: [Heatmap(values: allNaN), Heatmap(values: values)]).write(to: dir.file("g.png"))
        _ = try pngSize(dir.file("all.png"))
    }

    @Test("NaN points break curves; NaN grid points in contour plots")
    func curvesAndFields() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        try LinePlot(series: [.init(name: "a", y: [1, .nan, 3, 4, .infinity, 2]), .init(name: "", y: [5])])
            .write(to: dir.file("l.png"))
        var z = (0..<8).map { j in (0..<9).map { i in Double(i * i + j * j) } }
        z[3][4] = .nan
        z[0][0] = .nan
        try ContourPlot(x: (0..<9).map(Double.init), y: (0..<8).map(Double.init), z: z).write(to: dir.file("c.png"))
        try ContourPlot(x: [0, 1], y: [0, 1], z: [[1, 1], [1, 1]]).write(to: dir.file("flat.svg"))
        #expect(try dir.contents() == ["c.png", "flat.svg", "l.png"])
    }
}

@Suite("Extreme inputs")
struct ExtremeInputTests {
    @Test("Huge, tiny and nearly constant values draw or throw a PlotError, never trap")
    func extremes() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let cases: [(String, LinePlot)] = [
            ("offset", LinePlot(series: [.init(name: "a", y: [1e16, 1e16 + 2, 1e16 + 4])])),
            ("huge", LinePlot(series: [.init(name: "a", x: [-1e300, 1e300], y: [1e300, -1e300])])),
            ("tiny", LinePlot(series: [.init(name: "a", x: [0, 1e-300], y: [Double.leastNonzeroMagnitude, 1e-300])])),
            ("constant", LinePlot(series: [.init(name: "a", y: [2, 2, 2])])),
        ]
        for (name, plot) in cases {
            do { try plot.write(to: dir.file(name + ".png")) } catch is PlotError {}
        }
        do {
            try ContourPlot(x: [0, 1e-300], y: [0, 1], z: [[1e300, -1e300], [0, 1]]).write(to: dir.file("c.png"))
        } catch is PlotError {}
        do {
            try Heatmap(values: [[1e308, -1e308]], colorRange: -1e308...1e308).write(to: dir.file("h.svg"))
        } catch is PlotError {}
        #expect(throws: PlotError.self) { try Heatmap(values: [[1]]).write(to: dir.file("w.png"), width: 40_000) }
        #expect(try dir.contents().allSatisfy { !$0.hasPrefix(".") }, "no temporary file left")
    }
}

@Suite("Colour map, ticks, PNG chunks")
struct ComponentTests {
    @Test("Viridis runs from dark violet to yellow with strictly increasing luminance")
    func colormap() {
        let map = Colormap.viridis
        #expect(map.color(at: 0) == RGBColor(hex: 0x440154))
        #expect(map.color(at: 1) == RGBColor(hex: 0xFDE725))
        #expect(map.color(at: -3) == map.color(at: 0) && map.color(at: 7) == map.color(at: 1))
        #expect(map.color(at: .nan) == RGBColor.missing)
        let lum = (0...200).map { map.color(at: Double($0) / 200).luminance }
        #expect(zip(lum, lum.dropFirst()).allSatisfy { $0 < $1 }, "monotone luminance")
        #expect(lum.first! < 0.05 && lum.last! > 0.7)
        #expect(map.color(of: 5, in: 0...10) == map.color(at: 0.5))
    }

    @Test(
        "Nice ticks use 1-2-5 steps",
        arguments: [
            (0.0, 1.0, 5, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
            (0.0, 11.0, 6, [0, 2, 4, 6, 8, 10]),
            (-1.0, 1.0, 4, [-1, -0.5, 0, 0.5, 1]),
            (0.13, 0.87, 5, [0.2, 0.4, 0.6, 0.8]),
            (3.0, 3.0, 5, [3]),
        ])
    func niceTicks(lower: Double, upper: Double, target: Int, expected: [Double]) {
        let ticks = NiceTicks(lower: lower, upper: upper, target: target)
        #expect(ticks.values.count == expected.count)
        for (a, b) in zip(ticks.values, expected) { #expect(abs(a - b) < 1e-12) }
    }

    @Test("Tick and value labels")
    func labels() {
        #expect(NiceTicks(lower: 0, upper: 1, target: 5).labels == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        #expect(formatTick(-0.5, step: 0.5) == "\u{2212}0.5")
        #expect(formatTick(-1e-17, step: 0.5) == "0.0")
        #expect(formatTick(20, step: 5) == "20")
        #expect(formatTick(2e-5, step: 1e-5) == "2e-05")
        #expect(formatValue(0.876) == "0.88")
        #expect(formatValue(-0.001) == "0.00")
        #expect(formatValue(.nan) == "")
        let big = NiceTicks(lower: 0, upper: 2e6, target: 4)
        #expect(big.labels == ["0.0", "0.5", "1.0", "1.5", "2.0"] && big.multiplier == "×10⁶")
        #expect(big.axisLabel("steps") == "steps (×10⁶)")
        let small = NiceTicks(lower: 1e-6, upper: 5e-6, target: 4)
        #expect(small.labels == ["1", "2", "3", "4", "5"] && small.axisLabel("") == "×10⁻⁶")
        #expect(NiceTicks(lower: 0, upper: 1, target: 5).multiplier == nil)
    }

    @Test("PNG files carry a 144 dpi pHYs chunk with a valid CRC")
    func physicalSize() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        try Heatmap(values: [[0.5]]).write(to: dir.file("p.png"))
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("p.png"))))
        #expect(crc32(bytes[12..<29]) == bytes[29..<33].reduce(0) { $0 << 8 | UInt32($1) }, "IHDR CRC")
        #expect(Array(bytes[37..<41]) == Array("pHYs".utf8))
        #expect(crc32(bytes[37..<50]) == bytes[50..<54].reduce(0) { $0 << 8 | UInt32($1) }, "pHYs CRC")
        #expect(bytes[41..<45].reduce(0) { $0 << 8 | Int($1) } == 5669)
    }
}

@Suite("Marching squares")
struct MarchingSquaresTests {
    @Test(
        "Level r² of the cone x² + y² is one closed loop on the circle of radius r",
        arguments: [0.3, 0.55, 0.8])
    func cone(radius: Double) {
        let xs = (0...40).map { -1 + 0.05 * Double($0) }
        let ys = (0...30).map { -1 + 0.0666666666666667 * Double($0) }
        let z = ys.map { y in xs.map { x in x * x + y * y } }
        let lines = marchingSquares(x: xs, y: ys, z: z, level: radius * radius)
        #expect(lines.count == 1)
        guard let line = lines.first else { return }
        #expect(line.isClosed)
        #expect(line.points.count > 20)
        let worst = line.points.map { abs(($0.x * $0.x + $0.y * $0.y).squareRoot() - radius) }.max()!
        #expect(worst < 0.01, "largest distance from the circle: \(worst)")
        // The loop goes all the way round.
        let angles = line.points.map { atan2($0.y, $0.x) }
        #expect(angles.min()! < -3 && angles.max()! > 3)
    }

    @Test("A plane gives one straight open line; NaN cells cut it; out-of-range levels give nothing")
    func plane() {
        let xs = (0...10).map(Double.init), ys = (0...6).map(Double.init)
        var z = ys.map { y in xs.map { x in x + 0 * y } }
        let lines = marchingSquares(x: xs, y: ys, z: z, level: 4.5)
        #expect(lines.count == 1)
        #expect(lines[0].isClosed == false && lines[0].points.count == 7)
        #expect(lines[0].points.allSatisfy { abs($0.x - 4.5) < 1e-12 })
        z[3][4] = .nan
        #expect(marchingSquares(x: xs, y: ys, z: z, level: 4.5).count == 2)
        #expect(marchingSquares(x: xs, y: ys, z: z, level: 20).isEmpty)
        #expect(marchingSquares(x: xs, y: ys, z: z, level: .nan).isEmpty)
    }

    @Test("Saddle cells are split by the centre value")
    func saddle() {
        let xs = [0.0, 1], ys = [0.0, 1]
        // Corners a (0,0) and c (1,1) high, b and d low.
        func centre(_ line: ContourLine) -> (x: Double, y: Double) {
            let n = Double(line.points.count)
            return (line.points.map(\.x).reduce(0, +) / n, line.points.map(\.y).reduce(0, +) / n)
        }
        // Corners (0,0) and (1,1) high, (1,0) and (0,1) low; the centre 0.55 is above the level, so the
        // low corners are cut off.
        let high = marchingSquares(x: xs, y: ys, z: [[1, 0], [0, 1.2]], level: 0.5).map(centre)
        #expect(high.count == 2)
        #expect(high.contains { $0.x > 0.5 && $0.y < 0.5 })
        #expect(high.contains { $0.x < 0.5 && $0.y > 0.5 })
        // Centre 0.3 below the level: the high corners (0,0) and (1,1) are cut off.
        let low = marchingSquares(x: xs, y: ys, z: [[0.6, 0], [0, 0.6]], level: 0.5).map(centre)
        #expect(low.count == 2)
        #expect(low.contains { $0.x < 0.5 && $0.y < 0.5 })
        #expect(low.contains { $0.x > 0.5 && $0.y > 0.5 })
    }
}
