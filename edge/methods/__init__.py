"""Edge methods: image (+ question) -> descriptions. Registered by ``edge.method`` name."""

from semcom.registry import declare

declare(
    "edge-method",
    {
        "tokens": "edge.methods.tokens:TokenEdge",
        "jpeg": "edge.methods.image:PillowEdge",
        "webp": "edge.methods.image:PillowEdge",
        "codec": "edge.methods.codec:CodecEdge",
        "neck": "edge.methods.codec:NeckEdge",
        "projector": "edge.methods.projector:ProjectorEdge",
    },
)
