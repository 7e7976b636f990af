"""Sweeps: a YAML grid expanded into runs, executed serially, on a process pool or on Ray.

Each point of a sweep becomes one run with its own record under
``<run.out_dir>/<run_id>/``; points that are done are skipped, so an interrupted sweep
resumes; a failing run is recorded and the sweep goes on. After the runs the aggregate
table of the whole sweep is written to ``<run.out_dir>/sweeps/<name>/aggregate.{csv,json}``.

- :mod:`semcom.commands.sweep.spec`: the sweep file (:class:`Sweep`, :class:`SweepPoint`,
  :func:`load_sweep`);
- :mod:`semcom.commands.sweep.executors`: run functions (:func:`run_point`,
  :func:`resolve_run_fn`), thread limits and the serial / process / Ray executors;
- :mod:`semcom.commands.sweep.report`: what an invocation did (:class:`Outcome`,
  :class:`SweepReport`);
- :mod:`semcom.commands.sweep.aggregate`: table rows, ``aggregate.{csv,json}``, the
  stdout table, :func:`compare_runs`;
- :mod:`semcom.commands.sweep.run`: :func:`run_sweep` (resume, execute, aggregate) and
  :func:`sigterm_as_interrupt`;
- :mod:`semcom.commands.sweep.cli`: ``semcom sweep``.

Only :func:`main` (the ``semcom sweep`` entry point) is imported here, so that
``semcom sweep --help`` stays light; import the rest from its module.
"""

from __future__ import annotations

from semcom.commands.sweep.cli import main

__all__ = ["main"]
