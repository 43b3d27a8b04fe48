/// A contour line in data coordinates. A closed line repeats its first point at the end.
struct ContourLine {
    var points: [(x: Double, y: Double)]
    var isClosed: Bool
}

/// The contour lines of `z` at `level` by marching squares with linear interpolation along cell edges.
///
/// `z[j][i]` is the value at `(x[i], y[j])`. Cells with a NaN corner are skipped, so lines stop at missing
/// values. Saddle cells are resolved by the mean of their four corners. Segments are joined into polylines.
func marchingSquares(x: [Double], y: [Double], z: [[Double]], level: Double) -> [ContourLine] {
    let nx = x.count, ny = y.count
    guard nx >= 2, ny >= 2, z.count == ny, z.allSatisfy({ $0.count == nx }), level.isFinite else { return [] }

    // Edge keys: 2·(j·nx + i) is the horizontal edge from (i, j) to (i+1, j);
    // 2·(j·nx + i) + 1 is the vertical edge from (i, j) to (i, j+1).
    var points: [Int: (x: Double, y: Double)] = [:]
    var segments: [(Int, Int)] = []

    func crossing(_ i0: Int, _ j0: Int, _ i1: Int, _ j1: Int) -> (x: Double, y: Double) {
        let z0 = z[j0][i0], z1 = z[j1][i1]
        let t = z1 == z0 ? 0.5 : (level - z0) / (z1 - z0)
        return (x[i0] + (x[i1] - x[i0]) * t, y[j0] + (y[j1] - y[j0]) * t)
    }

    for j in 0..<(ny - 1) {
        for i in 0..<(nx - 1) {
            let a = z[j][i], b = z[j][i + 1], c = z[j + 1][i + 1], d = z[j + 1][i]
            guard !(a.isNaN || b.isNaN || c.isNaN || d.isNaN) else { continue }
            let index = (a > level ? 1 : 0) | (b > level ? 2 : 0) | (c > level ? 4 : 0) | (d > level ? 8 : 0)
            if index == 0 || index == 15 { continue }
            let bottom = 2 * (j * nx + i), top = 2 * ((j + 1) * nx + i)
            let left = 2 * (j * nx + i) + 1, right = 2 * (j * nx + i + 1) + 1
            func edge(_ key: Int) -> Int {
                if points[key] == nil {
                    switch key {
                    case bottom: points[key] = crossing(i, j, i + 1, j)
                    case top: points[key] = crossing(i, j + 1, i + 1, j + 1)
                    case left: points[key] = crossing(i, j, i, j + 1)
                    default: points[key] = crossing(i + 1, j, i + 1, j + 1)
                    }
                }
                return key
            }
            func add(_ p: Int, _ q: Int) { segments.append((edge(p), edge(q))) }
            let centreAbove = (a + b + c + d) / 4 > level
            switch index {
            case 1, 14: add(left, bottom)
            case 2, 13: add(bottom, right)
            case 3, 12: add(left, right)
            case 4, 11: add(right, top)
            case 6, 9: add(bottom, top)
            case 7, 8: add(left, top)
            case 5:
                if centreAbove { add(bottom, right); add(top, left) } else { add(left, bottom); add(right, top) }
            case 10:
                if centreAbove { add(left, bottom); add(right, top) } else { add(bottom, right); add(top, left) }
            default: break
            }
        }
    }

    // Join segments that share an edge point.
    var byEdge: [Int: [Int]] = [:]
    for (k, s) in segments.enumerated() {
        byEdge[s.0, default: []].append(k)
        byEdge[s.1, default: []].append(k)
    }
    var used = [Bool](repeating: false, count: segments.count)
    func walk(from key: Int) -> [Int] {
        var keys: [Int] = []
        var current = key
        while let next = byEdge[current]?.first(where: { !used[$0] }) {
            used[next] = true
            current = segments[next].0 == current ? segments[next].1 : segments[next].0
            keys.append(current)
        }
        return keys
    }
    // Start from open ends first so that open lines come out whole, then the loops.
    func isEnd(_ k: Int) -> Bool { byEdge[segments[k].0]!.count == 1 || byEdge[segments[k].1]!.count == 1 }
    let order = segments.indices.filter(isEnd) + segments.indices.filter { !isEnd($0) }
    var lines: [ContourLine] = []
    for k in order where !used[k] {
        used[k] = true
        let (start, end) = segments[k]
        let forward = walk(from: end)
        let backward = walk(from: start)
        let keys = backward.reversed() + [start, end] + forward
        let closed = keys.count > 2 && keys.first == keys.last
        lines.append(ContourLine(points: keys.map { points[$0]! }, isClosed: closed))
    }
    return lines
}
