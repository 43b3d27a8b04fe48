/// `_CKASupport`: implementation details shared by the toolkit's modules (atomic output, progress,
/// parallel loops). Not API: names here may change without notice.
package enum CKASupport {}
