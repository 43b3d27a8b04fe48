// The umbrella module: `import CKAKit` brings in the whole public API.
@_exported import CKATensor
@_exported import CKAIO
@_exported import CKASimilarity
@_exported import CKAPlot
@_exported import CKACheckpoint
@_exported import CKAImages
@_exported import CKAViT
@_exported import CKAExtraction
@_exported import CKAAnalysis
@_exported import CKALandscape
// `CKAProgress`, the one public type of the internal support module.
@_exported import _CKASupport
