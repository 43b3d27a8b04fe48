/// Where a checkpoint came from, which decides how its keys map to timm's names.
public enum CheckpointSource: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// DINO backbone release (`dino_vitbase16_pretrain.pth`): a bare state dict of the backbone.
    case dino
    /// DINO full training checkpoint: `teacher` (default) or `student`, prefixes `module.` / `backbone.`,
    /// DINOHead `head.*` dropped.
    case dinoFull = "dino-full"
    /// MoCo-v3 (`vit-b-300ep.pth.tar`): `state_dict` with `module.base_encoder.` kept minus its projection `head`;
    /// also the linear-eval file (`module.` + classifier `head`).
    case mocoV3 = "mocov3"
    /// MAE (`mae_pretrain_vit_base.pth`, `…_full.pth`, `mae_visualize_…`, `mae_finetuned_…`): weights under
    /// `model`; decoder kept separately; finetuned files have `fc_norm` instead of `norm`.
    case mae
    /// RC-MAE: `teacher` (default), else `model`, else `student` (`module.` stripped); decoder kept separately.
    case rcmae
    /// timm state dict (usually safetensors): bare backbone plus classifier `head`; also a timm hub directory
    /// (`config.json` with `architecture`, `model_args`, `pretrained_cfg` beside the weights).
    case timm
    /// DINOv2-style ViT: LayerScale `ls1.gamma`/`ls2.gamma`, patch 14, optional `mask_token`/registers.
    case dinov2
    /// A Hugging Face model directory (`config.json` + `model.safetensors`, sharded safetensors with an index, or
    /// `pytorch_model.bin`): ViT, DeiT, DINOv2 (with registers), CLIP and SigLIP vision towers, by `model_type`.
    case huggingFace = "hf"
    /// An open_clip state dict (`visual.*`: `ln_pre`, `transformer.resblocks.{i}`, `ln_post`, `proj`).
    case openCLIP = "open-clip"

    public var description: String { rawValue }
}

/// The nonlinearity of the transformer MLPs (and of a MAP head's MLP).
public enum MLPActivation: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Exact erf GELU (PyTorch `nn.GELU()`; timm, DINO, MAE, HF `gelu`).
    case gelu
    /// GELU with the tanh approximation (PyTorch `GELU(approximate='tanh')`; HF `gelu_pytorch_tanh`, SigLIP).
    case geluTanh = "gelu_tanh"
    /// `x·σ(1.702·x)` (OpenAI CLIP's QuickGELU; HF `quick_gelu`).
    case quickGELU = "quick_gelu"

    public var description: String { rawValue }
}

/// The shape hyper-parameters of a Vision Transformer, inferred from its tensors.
public struct ViTArchitecture: Sendable, Equatable, Codable {
    /// Embedding width D.
    public var width: Int
    /// Number of blocks.
    public var depth: Int
    /// Attention heads (from the width unless overridden).
    public var heads: Int
    /// Patch side length (the stride of the patch-embedding convolution).
    public var patchSize: Int
    /// Input channels of the patch embedding (3 for RGB).
    public var inputChannels: Int
    /// Rows of `pos_embed` (for the standard layout: 1 + grid², e.g. 197 or 257).
    public var tokenCount: Int
    /// Tokens before the patches: the class token plus any register tokens.
    public var prefixTokens: Int
    /// True if `pos_embed` has rows for the prefix tokens (DINO, MAE, MoCo, timm, DINOv2).
    public var positionIncludesPrefix: Bool
    /// Patches per side of the square grid `pos_embed` was made for, if square.
    public var gridSize: Int?
    /// `gridSize · patchSize`, the input resolution the position table fits.
    public var imageSize: Int?
    /// Hidden width of the MLP.
    public var mlpHiddenWidth: Int
    /// `mlpHiddenWidth / width` (4 for all reference models).
    public var mlpRatio: Double
    /// True if `attn.qkv` has a bias.
    public var qkvBias: Bool
    /// True if blocks have LayerScale (`ls1.gamma`, `ls2.gamma`).
    public var layerScale: Bool
    /// True if the final norm is `norm` (applied to all tokens); false for MAE-finetuned `fc_norm` (global pool).
    public var hasFinalNorm: Bool
    /// True if there is an `fc_norm` (applied after global average pooling).
    public var hasFCNorm: Bool
    /// Classes of the classifier head, if the checkpoint has one.
    public var classCount: Int?
    /// LayerNorm epsilon (1e-6 for every reference model; 1e-12 for HF ViT/DeiT, 1e-5 for CLIP).
    public var layerNormEpsilon: Double = 1e-6
    /// True if token 0 is a class token (`cls_token`); false for SigLIP-style models (MAP head, no class token).
    public var classToken = true
    /// True if a distillation token (`dist_token`, DeiT) follows the class token.
    public var distillationToken = false
    /// Register tokens (`reg_token`) after the class and distillation tokens.
    public var registerTokens = 0
    /// True if a LayerNorm `norm_pre` is applied to the tokens before the blocks (CLIP's `ln_pre`).
    public var preNorm = false
    /// The MLP nonlinearity.
    public var activation = MLPActivation.gelu
    /// True if a MAP attention-pool head `attn_pool` (timm `AttentionPoolLatent`, SigLIP's head) pools the normed
    /// tokens into one vector.
    public var attentionPool = false
    /// Hidden width of the MAP head's MLP (nil: `mlpHiddenWidth`).
    public var attentionPoolHiddenWidth: Int?
    /// Outputs of the `head` hook point (the model's own head on its pooled features: a classifier's logits, with
    /// DeiT's two heads averaged, or CLIP's image projection), nil when the hook is not offered.
    public var headFeatures: Int?
    /// The family and layout the weights were read from (`hf/clip`, `open_clip`, …), nil for the timm-style layouts.
    public var family: String?

    /// An architecture given explicitly (e.g. for a randomly initialised model of a known shape).
    public init(
        width: Int, depth: Int, heads: Int, patchSize: Int, inputChannels: Int = 3, tokenCount: Int,
        prefixTokens: Int = 1, positionIncludesPrefix: Bool = true, gridSize: Int?, imageSize: Int?,
        mlpHiddenWidth: Int, mlpRatio: Double, qkvBias: Bool = true, layerScale: Bool = false,
        hasFinalNorm: Bool = true, hasFCNorm: Bool = false, classCount: Int? = nil, layerNormEpsilon: Double = 1e-6
    ) {
        self.width = width; self.depth = depth; self.heads = heads; self.patchSize = patchSize
        self.inputChannels = inputChannels; self.tokenCount = tokenCount; self.prefixTokens = prefixTokens
        self.positionIncludesPrefix = positionIncludesPrefix; self.gridSize = gridSize; self.imageSize = imageSize
        self.mlpHiddenWidth = mlpHiddenWidth; self.mlpRatio = mlpRatio; self.qkvBias = qkvBias
        self.layerScale = layerScale; self.hasFinalNorm = hasFinalNorm; self.hasFCNorm = hasFCNorm
        self.classCount = classCount; self.layerNormEpsilon = layerNormEpsilon
    }

    /// The head count conventionally used with `width` (ViT-Ti/S/B/L/H), or nil.
    public static func defaultHeads(forWidth width: Int) -> Int? {
        switch width {
        case 192: return 3
        case 384: return 6
        case 768: return 12
        case 1024: return 16
        case 1152: return 16  // SigLIP so400m
        case 1280: return 16
        case 1536: return 24  // DINOv2 ViT-g
        default: return nil
        }
    }

    /// Dimension of each head.
    public var headDimension: Int { width / max(heads, 1) }

    /// A timm-style model name, e.g. `vit_base_patch16_224` or `vit_small_patch14_dinov2`.
    public var timmName: String {
        let size: String
        switch width {
        case 192: size = "tiny"
        case 384: size = "small"
        case 768: size = "base"
        case 1024: size = "large"
        case 1280: size = "huge"
        case 1536: size = "giant"
        default: size = "w\(width)d\(depth)"
        }
        if layerScale && patchSize == 14 { return "vit_\(size)_patch14_dinov2" }
        return "vit_\(size)_patch\(patchSize)" + (imageSize.map { "_\($0)" } ?? "")
    }
}
