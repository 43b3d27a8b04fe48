import CKALandscape
import Testing

@Test func errorMessagesNameTheFileAndTheExpectation() {
    let e = LandscapeError.mismatch(
        file: "dirs.h5", what: "blocks.0.attn.qkv.weight", expected: "[2304, 768]", got: "[768]")
    #expect(e.description == "dirs.h5: blocks.0.attn.qkv.weight is [768], expected [2304, 768]")
}
