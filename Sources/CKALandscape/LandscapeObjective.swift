import CKATensor
import Foundation

/// The value of a loss landscape at one point of parameter space.
public struct LandscapeValue: Sendable, Equatable {
    /// Mean loss over the fixed examples.
    public var loss: Double
    /// Top-1 accuracy in percent, for classification losses.
    public var accuracy: Double?
    /// Named parts of the loss (e.g. `reconstruction`, `consistency` for RC-MAE).
    public var parts: [String: Double]
    /// The extreme eigenvalues of the Hessian at the point (`CurvatureMap`), when asked for.
    public var lambdaMin: Double?
    public var lambdaMax: Double?

    public init(loss: Double, accuracy: Double? = nil, parts: [String: Double] = [:]) {
        self.loss = loss
        self.accuracy = accuracy
        self.parts = parts
    }
}

/// What a landscape is a surface of: a loss over a fixed set of examples as a function of the
/// parameters. Implementations: `MAELandscapeObjective` (MAE and RC-MAE pre-training losses),
/// `CrossEntropyLandscapeObjective` (a linear head's cross-entropy), or your own closure via
/// `ClosureObjective`.
public protocol LandscapeObjective {
    /// Short name recorded in the store (`mae`, `rcmae`, `ce`, …).
    var name: String { get }
    /// θ₀, the centre of the landscape: every parameter the loss reads, in a fixed order.
    var center: ParameterSet { get }
    /// Names in `center` that a direction should not move by default (e.g. fixed sin-cos position
    /// tables), each with the reason, reported in the store.
    var fixedParameters: [String: String] { get }
    /// The loss at `parameters` (a full parameter set: `center` moved along some directions).
    func evaluate(at parameters: ParameterSet) throws -> LandscapeValue
}

extension LandscapeObjective {
    public var fixedParameters: [String: String] { [:] }
}

/// A landscape objective from a closure (tests, toy problems, custom losses).
public struct ClosureObjective: LandscapeObjective {
    public let name: String
    public let center: ParameterSet
    public let fixedParameters: [String: String]
    let body: (ParameterSet) throws -> LandscapeValue

    public init(
        name: String, center: ParameterSet, fixedParameters: [String: String] = [:],
        evaluate body: @escaping (ParameterSet) throws -> LandscapeValue
    ) {
        self.name = name
        self.center = center
        self.fixedParameters = fixedParameters
        self.body = body
    }

    public func evaluate(at parameters: ParameterSet) throws -> LandscapeValue { try body(parameters) }
}
