import CKATensor
import CKACheckpoint

/// The hook points of a Vision Transformer, named by timm's module paths (formats.md §1).
///
/// A hook's value is the output of that module: `patch_embed` `[B, P, D]` (patch tokens, before the
/// class token and position embedding), `blocks.{i}.norm1` `[B, T, D]`, `blocks.{i}.attn.qkv`
/// `[B, T, 3D]`, `blocks.{i}.attn.proj` `[B, T, D]`, `blocks.{i}.ls1` (LayerScale models only),
/// `blocks.{i}.norm2`, `blocks.{i}.mlp.fc1` `[B, T, 4D]`, `blocks.{i}.mlp.act`, `blocks.{i}.mlp.fc2`,
/// `blocks.{i}.ls2`, `blocks.{i}` (block output) and `norm` (final norm). Pooled features add a
/// suffix to `blocks.{i}` and `norm`: `:cls` (token 0), `:gap` (mean of all tokens), `:gap_nocls`
/// (mean of the patch tokens), each `[B, D]`; MAE-finetuned models add `fc_norm` `[B, D]`.
public enum HookPoint {
    /// Suffixes of pooled features (`Pooling.suffixes`).
    public static let poolings = Pooling.suffixes.map(\.rawValue)

    /// Every token-level hook of a model, in network order.
    public static func tokenHooks(for a: ViTArchitecture) -> [String] {
        var kinds: [LayerKind] = [.norm1, .qkv, .attnProj]
        if a.layerScale { kinds.append(.ls1) }
        kinds += [.norm2, .fc1, .act, .fc2]
        if a.layerScale { kinds.append(.ls2) }
        kinds.append(.block)
        var names = ["patch_embed"]
        for i in 0..<a.depth { names += kinds.map { LayerName(block: i, kind: $0).description } }
        if a.hasFinalNorm { names.append("norm") }
        return names
    }

    /// Every pooled hook (`blocks.{i}:cls`, …, `norm:…`, `fc_norm`), in network order.
    public static func pooledHooks(for a: ViTArchitecture) -> [String] {
        var outputs = (0..<a.depth).map { LayerName(block: $0) }
        if a.hasFinalNorm { outputs.append(LayerName("norm")) }
        var names = outputs.flatMap { o in Pooling.suffixes.map { o.pooled($0).description } }
        if a.hasFCNorm { names.append("fc_norm") }
        return names
    }

    /// All hooks: token-level in network order, each block's pooled features right after its output.
    public static func allHooks(for a: ViTArchitecture) -> [String] {
        var out: [String] = []
        for name in tokenHooks(for: a) {
            out.append(name)
            let parsed = LayerName(name)
            if parsed.isBlockOutput || name == "norm" { out += Pooling.suffixes.map { parsed.pooled($0).description } }
        }
        if a.hasFCNorm { out.append("fc_norm") }
        return out
    }
}
