/// The kind of hook point a layer comes from (formats.md §1 `kind` attribute).
public enum LayerKind: String, CaseIterable, Sendable {
    case patchEmbed = "patch_embed", norm1, qkv, attnProj = "attn_proj", ls1, norm2, fc1, act, fc2, ls2
    case block, norm, pooled, other

    /// The kind implied by a timm module path (`blocks.3.attn.qkv` → `.qkv`, `blocks.3:cls` → `.pooled`).
    public static func infer(from name: String) -> LayerKind { LayerName(name).kind }

    /// The block index in a timm module path (`blocks.7.mlp.fc1` → 7), or −1.
    public static func blockIndex(of name: String) -> Int { LayerName(name).block ?? -1 }

    /// The module path suffix of a per-block hook (`norm1` → `norm1`, `qkv` → `attn.qkv`), nil for kinds
    /// that are not inside a block (or are the block output itself).
    public var blockSuffix: String? {
        switch self {
        case .norm1: "norm1"
        case .qkv: "attn.qkv"
        case .attnProj: "attn.proj"
        case .ls1: "ls1"
        case .norm2: "norm2"
        case .fc1: "mlp.fc1"
        case .act: "mlp.act"
        case .fc2: "mlp.fc2"
        case .ls2: "ls2"
        case .patchEmbed, .block, .norm, .pooled, .other: nil
        }
    }
}

/// How tokens `[T, D]` are pooled into one feature vector: the suffix of a pooled layer's name
/// (`blocks.7:cls`, formats.md §1). A plain `[N, D]` layer has `none`.
public enum Pooling: String, CaseIterable, Sendable, Comparable {
    /// The class token (token 0).
    case cls
    /// The mean of all tokens, prefix tokens included (the seed paper's GAP).
    case gap
    /// The mean of the patch tokens (every prefix token excluded).
    case gapNoCLS = "gap_nocls"
    /// A plain `[N, D]` layer (no pooling suffix, or one the toolkit does not know).
    case none

    /// The three pooling suffixes, in the order they are stored.
    public static let suffixes: [Pooling] = [.cls, .gap, .gapNoCLS]

    public static func < (a: Pooling, b: Pooling) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// Pools `images` sequences of `tokens` rows of `width` floats (`src`, `[images·tokens, width]`) into
    /// `dst` (`[images, width]`). Means are summed in Double and rounded once; `prefixTokens` tokens (class,
    /// registers) lead each sequence and are left out by `gapNoCLS`; `cls` (and `none`) copy token 0.
    /// The one pooling kernel of the toolkit.
    public func pool(
        _ src: UnsafePointer<Float>, images: Int, tokens t: Int, width d: Int, prefixTokens: Int = 1,
        into dst: UnsafeMutablePointer<Float>
    ) {
        var acc = [Double](repeating: 0, count: self == .cls ? 0 : d)
        for i in 0..<images {
            let rows = src + i * t * d, o = dst + i * d
            switch self {
            case .cls, .none:
                o.update(from: rows, count: d)
            case .gap, .gapNoCLS:
                let first = self == .gap ? 0 : prefixTokens
                for j in 0..<d { acc[j] = 0 }
                acc.withUnsafeMutableBufferPointer { a in
                    for k in first..<t {
                        let r = rows + k * d
                        for j in 0..<d { a[j] += Double(r[j]) }
                    }
                }
                let inv = 1 / Double(t - first)
                for j in 0..<d { o[j] = Float(acc[j] * inv) }
            }
        }
    }
}

/// A layer's name in the toolkit's one vocabulary (formats.md §1): a timm module path (`patch_embed`,
/// `blocks.3.attn.qkv`, `blocks.3`, `norm`, `fc_norm`), with a pooling suffix for pooled features
/// (`blocks.3:cls`). Every module builds and parses names through this type.
public struct LayerName: Hashable, Sendable, CustomStringConvertible {
    /// The module path without the pooling suffix (`blocks.3`).
    public let module: String
    /// The pooling suffix (`none` for token layers and plain features).
    public let pooling: Pooling
    /// The block index (`blocks.7.mlp.fc1` → 7), nil outside the blocks.
    public let block: Int?
    /// The hook kind (`pooled` for any name with a `:` suffix).
    public let kind: LayerKind

    /// Parses a stored or requested name. Unknown names parse too (kind `other`).
    public init(_ name: String) {
        if let colon = name.lastIndex(of: ":"), let p = Pooling(rawValue: String(name[name.index(after: colon)...])),
            p != .none
        {
            module = String(name[..<colon])
            pooling = p
        } else {
            module = name  // an unknown suffix stays part of the name
            pooling = .none
        }
        let parts = module.split(whereSeparator: { $0 == "." || $0 == ":" })
        block = parts.count >= 2 && parts[0] == "blocks" ? Int(parts[1]) : nil
        kind = name.contains(":") ? .pooled : LayerName.kind(ofModule: module, parts: parts)
    }

    /// `blocks.{i}` (kind `.block`), or the hook `blocks.{i}.<suffix>` of `kind` inside block i.
    public init(block i: Int, kind: LayerKind = .block, prefix: String = "blocks") {
        self.init(kind.blockSuffix.map { "\(prefix).\(i).\($0)" } ?? "\(prefix).\(i)")
    }

    /// `self` pooled with `p` (`blocks.3` → `blocks.3:cls`).
    public func pooled(_ p: Pooling) -> LayerName { p == .none ? self : LayerName("\(module):\(p.rawValue)") }

    /// The name as stored.
    public var description: String { pooling == .none ? module : "\(module):\(pooling.rawValue)" }

    /// True for `[N, D]` features pooled from tokens (a pooling suffix, `fc_norm`, the MAP head `attn_pool`, or the
    /// model's own `head`).
    public var isPooled: Bool { kind == .pooled || module == "fc_norm" || module == "attn_pool" || module == "head" }

    /// True for a block output `blocks.{i}`.
    public var isBlockOutput: Bool { pooling == .none && kind == .block }

    private static func kind(ofModule name: String, parts: [Substring]) -> LayerKind {
        let last = parts.last.map(String.init) ?? name
        switch last {
        case "patch_embed": return .patchEmbed
        case "norm1": return .norm1
        case "qkv": return .qkv
        case "proj": return name.contains("attn") ? .attnProj : .other
        case "ls1": return .ls1
        case "norm2": return .norm2
        case "fc1": return .fc1
        case "act": return .act
        case "fc2": return .fc2
        case "ls2": return .ls2
        case "norm", "fc_norm": return .norm
        default: return Int(last) != nil && name.hasPrefix("blocks.") ? .block : .other
        }
    }
}
