"""The link between edge and cloud: a 5G NR physical layer that turns descriptions into
delivered bytes or erasures, plus an ideal link, an erasure link and a BLER-table
abstraction of the NR link. See docs/channel.md.

``import channel`` is cheap (numpy only); torch and Sionna load only for
``decoder: sionna``.

>>> from semcom.config.channel import ChannelConfig
>>> link = build_link(ChannelConfig(link="erasure", loss_prob=0.5))
>>> link.name
'erasure'
"""

from channel.link import (
    ErasureLink,
    IdealLink,
    Link,
    LinkStats,
    NrLink,
    TransmitResult,
    build_link,
)
from channel.table_link import NrTableLink

__all__ = [
    "build_link",
    "Link",
    "LinkStats",
    "TransmitResult",
    "IdealLink",
    "ErasureLink",
    "NrLink",
    "NrTableLink",
]
