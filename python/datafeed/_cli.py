"""Console scripts (pyproject.toml [project.scripts]): `pip install` puts
datafeed-producer and datafeed-make-mnist on PATH. Each replaces itself
(exec) with the binary this package carries in bin/, so flags, signals and
the exit status are the binary's own."""

import os
import sys
from typing import NoReturn, Optional

from .serving import _package_dir


def _exec(name: str, env: Optional[str]) -> NoReturn:
    # $<env> overrides, as for datafeed.serve(). Never a search of PATH:
    # the first hit there is this script itself.
    path = os.environ.get(env) if env else None
    if not path:
        path = os.path.join(_package_dir(), "bin", name)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        sys.stderr.write(
            "%s: %s is missing or not executable; reinstall the datafeed package (it carries the "
            "binary in datafeed/bin/)%s\n" % (name, path, " or set $%s" % env if env else "")
        )
        sys.exit(127)
    os.execv(path, [path] + sys.argv[1:])


def producer() -> NoReturn:
    """datafeed-producer"""
    _exec("datafeed-producer", "DATAFEED_PRODUCER")


def make_mnist() -> NoReturn:
    """datafeed-make-mnist"""
    _exec("datafeed-make-mnist", None)
