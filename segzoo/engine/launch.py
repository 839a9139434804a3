"""Commands run in a subprocess: training and evaluation with ``python -m segzoo.train_net`` (its
progress and ETA logged as Detectron2 logs them), and any other ``python -m`` step of a recipe.
Read the results back with :func:`segzoo.engine.results.last_eval_metrics`."""
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from ..errors import UserError

__all__ = ["run_command", "run_train_net", "train_net_command"]


def train_net_command(config_file: str, opts: Sequence[str] = (), resume: bool = True) -> List[str]:
    """The command line training (and, at its end, evaluating) ``config_file`` + ``KEY VALUE``
    ``opts`` in a fresh Python (``--resume``: continue from the output folder's last checkpoint)."""
    return [sys.executable, "-m", "segzoo.train_net", *(["--resume"] if resume else []),
            "--config-file", config_file, *opts]


def run_command(cmd: List[str], what: str, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> None:
    """Run ``cmd`` (its output goes to this process's); a non-zero exit status is a
    :class:`UserError` naming ``what`` and the command."""
    r = subprocess.run(cmd, env=dict(os.environ, **(env or {})), cwd=cwd)
    if r.returncode != 0:
        raise UserError(f"{what} failed (exit status {r.returncode}): {' '.join(cmd[1:])}")


def run_train_net(config_file: str, opts: Sequence[str] = (), resume: bool = True, what: str = "training",
                  env: Optional[Dict[str, str]] = None) -> None:
    """Train and evaluate in a subprocess (:func:`train_net_command`); the run's folder is the
    config's ``OUTPUT_DIR`` (give it in ``opts``)."""
    run_command(train_net_command(config_file, opts, resume), what, env)
