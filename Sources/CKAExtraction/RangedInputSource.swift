import CKAImages

/// An input source whose examples can be taken by position, so that each process of an MPI job reads and
/// decodes only its own share.
public protocol RangedInputSource: InputSource {
    /// Number of examples listed (before any is found unreadable).
    var listedCount: Int { get }
    /// The same source over the listed examples at `range` only.
    func restricted(to range: Range<Int>) throws -> Self
}

extension ImageFolderInput: RangedInputSource {
    public var listedCount: Int { folder.count }

    public func restricted(to range: Range<Int>) throws -> ImageFolderInput {
        var copy = self
        copy.loader = ImageBatchLoader(
            samples: Array(folder.samples[range]), preprocessing: loader.preprocessing,
            batchSize: loader.batchSize, strict: loader.strict, threads: loader.threads)
        return copy
    }
}

extension PixelStoreInput: RangedInputSource {
    public var listedCount: Int { limit }

    public func restricted(to range: Range<Int>) throws -> PixelStoreInput {
        var copy = self
        copy.position = range.lowerBound
        copy.limit = range.upperBound
        return copy
    }
}
