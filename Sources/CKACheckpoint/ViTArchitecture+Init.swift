extension ViTArchitecture {
    /// An architecture given explicitly (e.g. a randomly initialised model of a known shape): a standard
    /// ViT with a class token, a square `grid`×`grid` patch grid and an MLP of `mlpRatio`·`width`.
    public static func standard(
        width: Int, depth: Int, heads: Int, patchSize: Int, grid: Int, mlpRatio: Int = 4,
        layerScale: Bool = false, qkvBias: Bool = true
    ) -> ViTArchitecture {
        ViTArchitecture(
            width: width, depth: depth, heads: heads, patchSize: patchSize, inputChannels: 3,
            tokenCount: grid * grid + 1, prefixTokens: 1, positionIncludesPrefix: true, gridSize: grid,
            imageSize: grid * patchSize, mlpHiddenWidth: mlpRatio * width, mlpRatio: Double(mlpRatio),
            qkvBias: qkvBias, layerScale: layerScale, hasFinalNorm: true, hasFCNorm: false, classCount: nil)
    }
}
