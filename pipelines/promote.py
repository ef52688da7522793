"""``python -m pipelines promote``: the gate and the promotion by hand, and rollback.

python -m pipelines promote --config FILE --tracking-uri URI (--version N | --run-id ID)
        [--examples DIR] [--dry-run]
python -m pipelines promote --config FILE --tracking-uri URI --rollback N

``--version`` gates a registered version of the YAML's ``registry.model_name`` against the
version holding ``champion``; ``--run-id`` first registers that run's MLflow model (alias
``challenger``, as the sweep does). On PROMOTE the alias ``champion`` moves (unless
``--dry-run``), after the champion is read again. ``--examples`` is the challenger's ingest
folder, needed when the champion was evaluated under another protocol. ``--rollback N``
moves ``champion`` to the earlier version N without a gate. Prints the decision, its reason,
its figures (JSON) and ``champion=<version>``; a problem is one line on stderr, status 2.
Standard library at module top: trainer/ is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``promote`` subcommand's arguments."""
    parser.add_argument("--config", required=True, help="experiment YAML (its registry section)")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking (= registry) URI")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", default="", help="a registered version to gate and promote")
    which.add_argument("--run-id", default="", help="register this run, then gate and promote")
    which.add_argument("--rollback", default="", help="move champion back to this version")
    parser.add_argument("--examples", default="", help="the challenger's ingest folder")
    parser.add_argument("--dry-run", action="store_true", help="decide and tag, move nothing")


def run(args: argparse.Namespace) -> int:
    """Runs the command; raises ConfigError / RegistryError for the one-line errors."""
    from trainer import config as cfg
    from trainer import contract, registry, tracking

    config = cfg.load_config(args.config)
    name = config.registered_model_name
    client = tracking.open_client(args.tracking_uri)
    if args.rollback:
        back = registry.rollback(client, name, args.rollback)
        print(f"rolled back: {contract.ALIAS_CHAMPION} -> {name} version {back.version}")
        print(f"champion={back.version}")
        return 0
    version = args.version
    if args.run_id:
        version = registry.register_run(client, name, args.run_id).version
        print(f"registered run {args.run_id} as {name} version {version} (challenger)")
    result = registry.gate_version(client, name, version, config.registry, args.examples)
    print(result.line())
    print(json.dumps(result.figures(), indent=2, sort_keys=True))
    champion = result.champion_version
    if result.decision == contract.GATE_PROMOTE and not args.dry_run:
        done = registry.promote(
            client, name, version, config.registry, result.champion_version, args.examples
        )
        champion = done.champion_version
        if not done.moved:
            print(f"not moved: {done.result.line()}")
    print(f"champion={champion}")
    return 0
