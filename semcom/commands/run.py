"""``semcom run``: one in-process run (edge -> link -> cloud -> metrics) into a record."""

from __future__ import annotations

from semcom.cliargs import add_common_args, add_config_args, parser, setup_logging


def build_parser():
    p = parser("run", __doc__.split(":", 1)[1].strip())
    add_config_args(p)
    p.add_argument("--out", metavar="DIR", help="results root (overrides run.out_dir)")
    p.add_argument(
        "--overwrite", action="store_true", help="redo the run even if its record exists"
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config and run id, and exit"
    )
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from semcom.config import load_config, to_dict
    from semcom.fingerprint import run_id

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.quiet:
        overrides.append("run.progress=false")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(f"# run id: {run_id(cfg)}")
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from semcom.commands.runner import run

    result = run(cfg, overwrite=args.overwrite)
    print(result.summary())
    return result.exit_code  # 0 ok, 1 failed, 3 some samples could not be read
