"""Command lines for the pool's OS: the shell wrapper and application packages on PATH. Pure.

Batch runs a task's command line without a shell, so the modeller's command
gets one: ``/bin/bash -c 'set -e -o pipefail; ...'`` on Linux, ``cmd /s /c "..."``
on Windows. ``/s`` makes cmd's quote handling the simple rule (drop the first
and the last quote, keep the rest), whatever the command holds; without it cmd
guesses, and a command that starts and ends with a quoted path is mangled. A
Windows command of several lines runs them one after another with ``&&``,
stopping at the first that fails, as ``set -e`` does on Linux (``cmd /c`` would
otherwise run the first line only and ignore the rest without a word).

Application packages: Batch installs each package of the pool (or task) on the
node and tells the task where, in an environment variable whose name depends on
the node's OS (``docs/contracts.md``, "Application packages"):

- Linux: ``AZ_BATCH_APP_PACKAGE_<id>_<version>``, every '.', '-' and '#' (any
  character that is not a letter, digit or '_') flattened to '_'; the case of
  the application id is the one the Batch account stores (reported both as the
  id's own case and as lower case), so the lookup below ignores case;
- Windows: ``AZ_BATCH_APP_PACKAGE_<ID>#<version>``, unflattened (Windows
  variable names ignore case; Batch's documentation writes the id upper-case);
- a package referenced without a version (the application's default version):
  ``AZ_BATCH_APP_PACKAGE_<id>``, no version suffix, on both.

Batch does not expand environment settings (``PATH=$X:$PATH`` would arrive
literally), and where the package landed is known only on the node, so the
command line itself puts the directories on PATH, each package's directory and
its ``bin`` folder, the first package listed first:

- Linux: a fixed prefix that reads the variable names from
  ``DMSBATCH_APP_PACKAGES`` (an environment setting of the task), so no spec
  value is pasted into the bash string;
- Windows: ``set "PATH=%AZ_BATCH_APP_PACKAGE_DSM2#8.2.2%;...;%PATH%" && ...``,
  the way Batch's own samples reference packages in cmd (``%NAME#1.0%`` expands
  like any variable). cmd has no indirect expansion without delayed expansion,
  so the names are written into the command; they are built from package ids
  and versions the spec validates (letters, digits, '_', '-', '.') and checked
  again here, so nothing cmd treats specially (``% " & | < > ^ ( ) !``) can
  reach the command line.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from dmscontract.run_spec import AppPackage

LINUX, WINDOWS = "linux", "windows"
PACKAGE_PREFIX = "AZ_BATCH_APP_PACKAGE_"
PACKAGES_VARIABLE = "DMSBATCH_APP_PACKAGES"  # the package variables, in PATH order, for the command's prefix
_FLATTEN = re.compile(r"[^A-Za-z0-9_]")
_SAFE_WINDOWS_NAME = re.compile(r"^AZ_BATCH_APP_PACKAGE_[A-Z0-9_-]+(#[A-Za-z0-9_.-]+)?$")

# bash: each name in $DMSBATCH_APP_PACKAGES, found exactly or else ignoring case, gives <dir>:<dir>/bin
_LINUX_PATH_PREFIX = (
    'for _pkg_var in ${DMSBATCH_APP_PACKAGES-}; do _pkg_dir="${!_pkg_var-}"; '
    'if [ -z "$_pkg_dir" ]; then for _pkg_name in ${!AZ_BATCH_APP_PACKAGE_@}; do '
    'if [ "${_pkg_name,,}" = "${_pkg_var,,}" ]; then _pkg_dir="${!_pkg_name}"; fi; done; fi; '
    'if [ -n "$_pkg_dir" ]; then _pkg_path="${_pkg_path-}${_pkg_path:+:}$_pkg_dir:$_pkg_dir/bin"; fi; done; '
    'export PATH="${_pkg_path-}${_pkg_path:+:}$PATH"; unset _pkg_var _pkg_dir _pkg_name _pkg_path; '
)


def package_variable(app_id: str, version: str | None, os_family: str) -> str:
    """The environment variable in which Batch gives a task the directory of an installed package."""
    if os_family == WINDOWS:
        return PACKAGE_PREFIX + app_id.upper() + (f"#{version}" if version else "")
    name = PACKAGE_PREFIX + _FLATTEN.sub("_", app_id)
    return f"{name}_{_FLATTEN.sub('_', version)}" if version else name


def package_variables(packages: Iterable[AppPackage], os_family: str) -> list[str]:
    """The variables of a pool's ``application_packages``, in the order listed."""
    return [package_variable(p.id, p.version, os_family) for p in packages]


def with_packages_on_path(command: str, variables: list[str], os_family: str) -> str:
    """``command`` preceded by what puts the packages' directories (and their ``bin``) on PATH."""
    if not variables:
        return command
    if os_family == WINDOWS:
        unsafe = [name for name in variables if not _SAFE_WINDOWS_NAME.match(name)]
        if unsafe:  # the spec's validation makes this impossible; never paste such a name into cmd
            raise ValueError(f"application package variable {unsafe[0]!r} cannot be written into a cmd command line")
        dirs = ";".join(f"%{name}%;%{name}%\\bin" for name in variables)
        return f'set "PATH={dirs};%PATH%" && {command}'
    return _LINUX_PATH_PREFIX + command


def command_line(command: str, os_family: str, packages: list[str] | None = None) -> str:
    """The task's command line: ``command`` in the OS's shell, the packages' variables' directories on PATH.

    ``packages`` are variable names from ``package_variables``; on Linux the
    task must also carry them in ``DMSBATCH_APP_PACKAGES`` (``package_environment``).
    """
    if os_family == WINDOWS:
        steps = [line.strip() for line in command.splitlines() if line.strip()]
        return f'cmd /s /c "{with_packages_on_path(" && ".join(steps), packages or [], os_family)}"'
    # fail on the first failing step, including inside pipes, as a modeller's shell script would want
    return f"/bin/bash -c {shlex.quote('set -e -o pipefail; ' + with_packages_on_path(command, packages or [], os_family))}"


def package_environment(variables: list[str]) -> dict[str, str]:
    """The environment setting the Linux prefix reads (set on Windows too, for scripts that want it)."""
    return {PACKAGES_VARIABLE: " ".join(variables)} if variables else {}
