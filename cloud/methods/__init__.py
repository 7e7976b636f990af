"""Cloud methods: received descriptions -> tokens for the model. Keyed by ``edge.method``."""

from semcom.registry import declare

declare(
    "cloud-method",
    {
        "tokens": "cloud.methods.tokens:TokenCloud",
        "jpeg": "cloud.methods.image:PillowCloud",
        "webp": "cloud.methods.image:PillowCloud",
        "codec": "cloud.methods.codec:CodecCloud",
        "neck": "cloud.methods.codec:NeckCloud",
        "projector": "cloud.methods.projector:ProjectorCloud",
    },
)
