"""The `cadre` command line. Commands that call no model never import litellm."""

from __future__ import annotations

import sys

from orchestrator.cli import run_commands, service_commands, steering_commands  # noqa: F401  (they register commands)
from orchestrator.cli.common import cli


def main() -> None:
    """Console-script entry point."""
    from pydantic import ValidationError

    try:
        cli()
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = "CADRE_" + "_".join(str(part) for part in problem["loc"]).upper()
        print(f"error: invalid setting {name}: {problem['msg']}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
