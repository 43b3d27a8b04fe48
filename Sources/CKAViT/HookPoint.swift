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

    /// The poolings a model offers: `cls` only with a class token (SigLIP-style models have none).
    public static func poolingKinds(for a: ViTArchitecture) -> [Pooling] {
        a.classToken ? Pooling.suffixes : Pooling.suffixes.filter { $0 != .cls }
    }

    /// Every token-level hook of a model, in network order.
    public static func tokenHooks(for a: ViTArchitecture) -> [String] {
        var kinds: [LayerKind] = [.norm1, .qkv, .attnProj]
        if a.layerScale { kinds.append(.ls1) }
        kinds += [.norm2, .fc1, .act, .fc2]
        if a.layerScale { kinds.append(.ls2) }
        kinds.append(.block)
        var names = ["patch_embed"]
        if a.preNorm { names.append("norm_pre") }
        for i in 0..<a.depth { names += kinds.map { LayerName(block: i, kind: $0).description } }
        if a.hasFinalNorm { names.append("norm") }
        return names
    }

    /// The `[B, D]` / `[B, C]` hooks after the blocks: `fc_norm`, `attn_pool`, `head` (those the model has).
    public static func headHooks(for a: ViTArchitecture) -> [String] {
        var names: [String] = []
        if a.hasFCNorm { names.append("fc_norm") }
        if a.attentionPool { names.append("attn_pool") }
        if a.headFeatures != nil { names.append("head") }
        return names
    }

    /// Every pooled hook (`blocks.{i}:cls`, …, `norm:…`, `fc_norm`, `attn_pool`, `head`), in network order.
    public static func pooledHooks(for a: ViTArchitecture) -> [String] {
        var outputs = (0..<a.depth).map { LayerName(block: $0) }
        if a.hasFinalNorm { outputs.append(LayerName("norm")) }
        let kinds = poolingKinds(for: a)
        return outputs.flatMap { o in kinds.map { o.pooled($0).description } } + headHooks(for: a)
    }

    /// All hooks: token-level in network order, each block's pooled features right after its output.
    public static func allHooks(for a: ViTArchitecture) -> [String] {
        var out: [String] = []
        let kinds = poolingKinds(for: a)
        for name in tokenHooks(for: a) {
            out.append(name)
            let parsed = LayerName(name)
            if parsed.isBlockOutput || name == "norm" { out += kinds.map { parsed.pooled($0).description } }
        }
        return out + headHooks(for: a)
    }
}
