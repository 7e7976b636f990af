"""semcom: an edge-to-cloud semantic-communication simulator.

The package ``semcom`` holds what both ends share: configuration, the data types that
flow (payloads, descriptions, erasures, rate ledgers), rate accounting, results,
models, metrics and the ``semcom`` command. Heavy dependencies (torch, sionna,
transformers, compressai) are imported lazily, inside the functions that need them.
"""

__version__ = "0.1.0"
