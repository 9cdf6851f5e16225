"""The one thing pyproject.toml cannot say: install each of the repository's package folders
under the `callstt` import root (streams/ as callstt.streams, models/ as callstt.models, ...),
so an embedding application's own `streams` or `models` package is never shadowed.

The bench (with its corpora and worker subprocesses) and the local broker helpers are
development tools: they run from a checkout (`scripts/setup` installs it editable, where every
folder imports), and the wheel leaves them out."""

from setuptools import find_packages, setup

ROOTS = ("streams", "models", "schemas", "infra")
CHECKOUT_ONLY = ("streams.bench", "streams.bench.*", "infra.local", "infra.local.*")

# Folders of data files only (no __init__.py) that ship: listed as packages so that setuptools
# knows they are meant (else it warns that an importable folder is missing from `packages`).
DATA_FOLDERS = ("schemas.history",)

setup(
    packages=[f"callstt.{name}" for name in find_packages(include=[f"{root}*" for root in ROOTS],
                                                           exclude=CHECKOUT_ONLY) + list(DATA_FOLDERS)],
    package_dir={f"callstt.{root}": root for root in ROOTS},
)
