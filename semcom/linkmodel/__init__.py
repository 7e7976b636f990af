"""The link's abstraction model, shared by the link (``channel/``), the config checks and
the planners of the application: the MCS tables of TS 38.214, BLER tables and their
lookups, and link adaptation. numpy only (no torch, no Sionna)."""
