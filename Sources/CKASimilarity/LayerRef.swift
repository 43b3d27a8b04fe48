import CKAIO

/// One layer of one store: the unit a comparison reads, caches and reports on. Two refs are equal when
/// they name the same layer of the same store object, so a store compared with itself reads each layer once.
package struct LayerRef: Hashable, @unchecked Sendable {
    public let store: ActivationStore
    public let name: String

    public init(_ store: ActivationStore, _ name: String) {
        self.store = store
        self.name = name
    }

    public static func == (l: LayerRef, r: LayerRef) -> Bool { l.store === r.store && l.name == r.name }

    public func hash(into h: inout Hasher) {
        h.combine(ObjectIdentifier(store))
        h.combine(name)
    }

    /// The refs of `a`'s layers then `b`'s, each once, in that order.
    static func distinct(_ a: [LayerRef], _ b: [LayerRef]) -> [LayerRef] {
        var seen = Set<LayerRef>()
        return (a + b).filter { seen.insert($0).inserted }
    }
}
