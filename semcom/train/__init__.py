"""Training of what semcom ships: the tiny models (:mod:`.tinyworld`), codebooks, codecs,
necks and projectors, as plain functions; ``semcom train TARGET`` (in
:mod:`semcom.commands.train`) is their command line."""
